"""The pack's model-fits-gpu runs on vendored facts with a lower bound (weights + one full-length sequence's
KV cache + the smallest overhead); the project's planner (sizing/memory.py) is the full estimate. The pack
must never refuse a layout the planner says fits, and must refuse the ones that cannot hold the weights."""
import pytest

from llm_platform.catalog import load
from llm_platform.policies.core import Resource
from llm_platform.policies.rules import BY_NAME
from llm_platform.sizing.memory import Layout, Workload, estimate
from tests.policies_baseline import b64

RULE = BY_NAME["model-fits-gpu"]
CAT = load()
INSTANCES = ["g4dn.xlarge", "g5.xlarge", "g6e.xlarge", "g5.12xlarge", "g6e.12xlarge", "p4d.24xlarge", "p5.48xlarge"]
MODELS = [m for m, info in CAT.models.items() if info.task == "generate"]


def pack_refuses(model: str, itype: str, tp: int, max_len: int) -> bool:
    script = (f"#!/bin/bash\ndocker run -d --gpus all --network host vllm/vllm-openai@sha256:{'a' * 64} "
              f"--model {model} --host 127.0.0.1 --tensor-parallel-size {tp} --max-model-len {max_len} "
              "--gpu-memory-utilization 0.9\n")
    lt = Resource("aws:ec2/launchTemplate:LaunchTemplate", "lt", {"instanceType": itype, "userData": b64(script)})
    findings = RULE.run(lt, RULE.context({}))
    assert not [f for f in findings if f.undetermined], findings
    return bool(findings)


@pytest.mark.parametrize("itype", INSTANCES)
def test_the_pack_never_refuses_what_the_planner_fits(itype):
    inst = CAT.instances[itype]
    gpu = CAT.gpu_of(inst)
    precision = "bf16" if gpu.compute_capability >= 8.0 else "fp16"
    checked = refused = 0
    for model in MODELS:
        arch = CAT.models[model].architecture
        tp = inst.gpu_count
        if arch.num_attention_heads % tp:
            continue
        max_len = min(arch.max_position_embeddings, 8192)
        need = Workload(runtime="vllm", precision=precision, kv_cache_dtype="auto", max_model_len=max_len,
                        concurrency=1, max_num_batched_tokens=8192, gpu_memory_utilization=0.9)
        planner_fits = estimate(arch, need, Layout(tensor_parallel=tp), gpu.memory_gib, CAT).fits
        refuses = pack_refuses(model, itype, tp, max_len)
        checked += 1
        refused += refuses
        assert not (refuses and planner_fits), f"{model} on {itype} TP{tp}: the planner fits it, the pack refuses"
    assert checked >= 5


def test_the_pack_refuses_what_cannot_hold_the_weights():
    assert pack_refuses("meta-llama/Llama-3.1-70B-Instruct", "g5.xlarge", 1, 8192)
    assert pack_refuses("meta-llama/Llama-3.1-405B-Instruct", "p4d.24xlarge", 8, 8192)
    assert not pack_refuses("meta-llama/Llama-3.1-8B-Instruct", "g6e.xlarge", 1, 8192)
