"""The model fits its GPUs at its tensor/pipeline parallel sizes, judged from the server's own flags on the
instance type it runs on. The pack carries the facts it needs (policies/data/facts.json: GPU memory,
model shapes, weight sizes per precision as the planner computes them) and checks a lower bound:
weights + the KV cache of one full-length sequence + the smallest per-GPU overhead. A model that fails
it cannot start; one that passes may still be tight, which plan.py's full estimate says."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..core import UNKNOWN, Context, Finding, Resource, as_num, levels, opaque, rule, undetermined, violation
from ..facts import Facts, Gpu, Model, facts
from ..workloads import Process, workload
from .models import identity, registry_model
from .runtime import TYPES

GIB = float(2 ** 30)
_OLLAMA_QUANT = re.compile(r"[-:](q\d_[a-z0-9_]+|fp16|f16|q8_0)$", re.I)


def _num(v: Any, default: int | None) -> Any:
    """An int (sizes such as 8k / 1M too), `default` when absent, or UNKNOWN when unreadable."""
    if v is None or v is True:
        return default
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", v)
        if m:
            n = float(m.group(1)) * {"": 1, "k": 1024, "K": 1024, "m": 2 ** 20, "M": 2 ** 20}[m.group(2)]
            return int(n)
    n = as_num(v)
    if opaque(n) or n is None:
        return UNKNOWN
    return int(n)


def _precision(p: Process, info: Model, gpu: Gpu, cat: Facts, model_name: str, hint: Any = None) -> str | None:
    if isinstance(hint, str) and hint.lower() in cat.precisions and \
            p.runtime in cat.precisions[hint.lower()]["runtimes"]:
        return hint.lower()         # the deployment's own precision tag, when the command leaves it implicit
    if p.runtime == "ollama":
        m = _OLLAMA_QUANT.search(model_name or "")
        if m:
            q = m.group(1).lower().replace("f16", "fp16")
            q = "fp16" if q == "fp16" else q
            return q if q in cat.precisions else None
        return "fp16" if info.task == "embed" else "q4_k_m"
    q = (p.flag("--quantization", "-q") if p.runtime == "vllm" else p.flag("--quantize") or p.envv("QUANTIZE"))
    if isinstance(q, str):
        q = q.lower()
        for key in ("fp8", "awq", "gptq"):
            if q.startswith(key):
                return key
        return None      # bitsandbytes, eetq, ...: not modelled
    low = (model_name or "").lower()
    for key in ("awq", "gptq", "fp8"):
        if f"-{key}" in low:
            return key
    dtype = str(p.flag("--dtype") or p.envv("DTYPE") or "auto").lower()
    if dtype in ("float16", "half", "fp16"):
        return "fp16"
    if dtype in ("bfloat16", "bf16"):
        return "bf16"
    return "bf16" if gpu.compute_capability >= 8.0 else "fp16"


def _kv_dtype(p: Process) -> str:
    if p.runtime == "ollama":
        v = str(p.envv("OLLAMA_KV_CACHE_TYPE") or "auto").lower()
        return v if v in ("q8_0", "q4_0") else "auto"
    v = str(p.flag("--kv-cache-dtype") or "auto").lower()
    return "fp8" if v.startswith("fp8") else "auto"


@rule(
    name="model-fits-gpu",
    description="The model fits the GPUs it is given at its tensor/pipeline parallel sizes: TP x PP no more than "
                "the instance's (or pod's) GPUs, TP dividing the attention heads, the precision supported by "
                "the GPU, and weights + KV cache for one full-length sequence + overhead within "
                "GPU memory x utilization (the project's planner; Ollama: without spilling layers to CPU).",
    must="Provision appropriate hardware; MUST use tensor parallelism for models that exceed single GPU VRAM",
    guide="Hardware Requirements; vLLM: Production Deployment (Tensor Parallelism for Large Models); "
          "Do and Don't Examples (DON'T run 70B on insufficient hardware)",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, Ollama spills to CPU instead of failing and a dev box may be undersized on purpose",
    remediation="Raise --tensor-parallel-size to the instance's GPUs, pick a larger instance, a lower precision "
                "(fp8, awq), a shorter --max-model-len or an fp8 KV cache; `python plan.py` says which fits.",
    types=TYPES,
)
def model_fits_gpu(r: Resource, ctx: Context) -> Iterator[Finding]:
    w = workload(r)
    if w is None or not w.processes:
        return
    if w.opaque:
        yield undetermined("the workload's commands are not known yet")
        return
    cat = facts()
    tags = r.tags()
    for p in w.processes:
        name = identity(p, {**tags, **p.env})
        if opaque(name):
            yield undetermined(f"{p.label}: the model is not known yet")
            continue
        info = registry_model(name)
        if info is None:
            continue        # not in the registry: no architecture to size (plan.py sizes custom models)
        arch = info
        if p.runtime == "llamacpp":
            continue
        tp = _num(p.flag("--tensor-parallel-size", "-tp") if p.runtime == "vllm" else p.flag("--num-shard")
                  or p.envv("NUM_SHARD"), None)
        pp = _num(p.flag("--pipeline-parallel-size", "-pp"), 1) if p.runtime == "vllm" else 1
        if opaque(tp) or opaque(pp):
            yield undetermined(f"{p.label}: the parallel sizes cannot be read before start-up")
            continue
        targets = []
        for t in w.instance_types:
            if opaque(t):
                yield undetermined(f"{p.label}: the instance type is not known yet")
            elif isinstance(t, str) and t.removeprefix("ml.") in cat.instances:
                inst = cat.instances[t.removeprefix("ml.")]
                targets.append((t, inst.gpu, inst.gpu_count))
        if not targets and isinstance(w.gpu_count, int) and tp is not None and p.runtime != "ollama":
            if tp * pp > w.gpu_count:
                yield violation(f"{p.label} asks for tensor-parallel {tp} x pipeline-parallel {pp} = {tp * pp} GPUs "
                                f"but is given {w.gpu_count}")
            continue
        for itype, gpu, count in targets:
            tpv = tp if tp is not None else (count if p.runtime == "tgi" else 1)
            if p.runtime != "ollama":
                if arch.num_attention_heads % tpv:
                    yield violation(f"{p.label}: tensor-parallel size {tpv} does not divide {info.id}'s "
                                    f"{arch.num_attention_heads} attention heads; the server refuses to start")
                    continue
                if tpv * pp > count and not (w.platform == "k8s" and pp > 1 and tpv <= count):
                    yield violation(f"{p.label} needs {tpv * pp} GPUs (TP {tpv} x PP {pp}); {itype} has {count}")
                    continue
            hint = next((v for k, v in tags.items() if isinstance(k, str)
                         and re.search(r"(^|[:/._-])(precision|quantization)$", k, re.I)), None)
            explicit = p.flag("--quantization", "-q", "--quantize", "--dtype")
            prec = _precision(p, info, gpu, cat, name, None if explicit not in (None, True) else hint)
            if prec is None or prec not in cat.precisions:
                continue
            if gpu.compute_capability < cat.precisions[prec]["min_compute_capability"]:
                yield violation(f"{p.label}: {prec} needs compute capability "
                                f"{cat.precisions[prec]['min_compute_capability']}, {gpu.name} on {itype} has "
                                f"{gpu.compute_capability}")
                continue
            if p.runtime == "ollama":
                mml = _num(p.envv("OLLAMA_CONTEXT_LENGTH"), 4096)
                seqs = _num(p.envv("OLLAMA_NUM_PARALLEL"), 1)
                gmu = 0.90
            else:
                mml = _num(p.flag("--max-model-len") if p.runtime == "vllm" else p.flag("--max-total-tokens")
                           or p.envv("MAX_TOTAL_TOKENS"), arch.max_position_embeddings)
                seqs = 1
                gmu_raw = (p.flag("--gpu-memory-utilization") if p.runtime == "vllm"
                           else p.flag("--cuda-memory-fraction") or p.envv("CUDA_MEMORY_FRACTION"))
                gmu = as_num(gmu_raw) if gmu_raw not in (None, True) else (0.90 if p.runtime == "vllm" else 1.0)
            if any(opaque(x) for x in (mml, seqs, gmu)) or gmu is None:
                yield undetermined(f"{p.label}: context length or memory fraction cannot be read before start-up")
                continue
            if prec not in info.weights_gib:
                continue
            weights = info.weights_gib[prec]
            kv_bytes = cat.kv_dtype_bytes.get(_kv_dtype(p), cat.kv_dtype_bytes.get("auto", 2))
            if p.runtime == "ollama":
                splits = [1] + ([count] if count > 1 else [])
                need = []
                for split in splits:
                    layers = -(-arch.num_hidden_layers // split)
                    kv = mml * seqs * arch.kv_bytes_per_token_per_layer(kv_bytes) * layers / GIB
                    need.append((weights / split, kv, cat.overhead_gib["ollama"]))
                what = f"{splits[-1]} GPU(s)"
            else:
                layers = -(-arch.num_hidden_layers // pp)
                kv = mml * seqs * arch.kv_bytes_per_token_per_layer(kv_bytes, tpv) * layers / GIB
                comm = (cat.overhead_gib["comm_base"] + cat.overhead_gib["comm_per_rank"] * tpv) if tpv * pp > 1 else 0
                need = [(weights / (tpv * pp), kv, cat.overhead_gib["vllm"] + comm)]
                what = f"TP {tpv}" + (f" x PP {pp}" if pp > 1 else "")
            usable = gpu.memory_gib * min(float(gmu), 1.0)
            if any(sum(n) <= usable for n in need):
                continue
            w_gib, kv_gib, oh = need[-1]
            yield violation(
                f"{p.label}: {info.id} at {prec} with a {mml}-token context does not fit {itype} at {what}: "
                f"at least {w_gib:.1f} GiB weights + {kv_gib:.1f} KV + {oh:.1f} overhead = {w_gib + kv_gib + oh:.1f} "
                f"GiB per GPU > {usable:.1f} usable" + (" (Ollama would spill layers to CPU)" if p.runtime == "ollama"
                                                       else ""))


RULES = [model_fits_gpu]
