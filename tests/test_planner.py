"""Instance choice, parallelism and advice: the planner's promises, as properties and examples."""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_platform.settings import parse
from llm_platform.sizing.memory import Layout, Workload, estimate
from llm_platform.sizing.planner import (
    PlanningError,
    architecture_of,
    cheapest,
    evaluate,
    plan_model,
    plan_stack,
    tensor_parallel_options,
    workload_of,
)
from tests.conftest import MINIMAL

GENERATORS = ["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-Coder-7B-Instruct", "Qwen/Qwen2.5-Coder-32B-Instruct",
              "codellama/CodeLlama-34b-Instruct-hf", "mistralai/Mistral-Nemo-Instruct-2407",
              "mistralai/Mixtral-8x7B-Instruct-v0.1", "bigcode/starcoder2-15b", "meta-llama/Llama-3.1-70B-Instruct"]


def stack_with(platform="ec2", **model):
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:platform"] = platform
    if platform == "eks":
        raw["llm-platform:network"]["egress"] = "nat"
    raw["llm-platform:models"][0].update(model)
    return parse(raw)


def plan_of(**model):
    platform = model.pop("platform", "ec2")
    s = stack_with(platform, **model)
    return plan_model(s.models[0], 0, s)


@st.composite
def deployments(draw):
    model = draw(st.sampled_from(GENERATORS))
    runtime = draw(st.sampled_from(["vllm", "ollama"]))
    precision = draw(st.sampled_from(["bf16", "fp8", "awq"] if runtime == "vllm" else ["q4_k_m", "q8_0", "fp16"]))
    return dict(model=model, runtime=runtime, precision=precision,
                max_model_len=draw(st.sampled_from([2048, 4096, 8192, 16384])),
                concurrency=draw(st.integers(1, 64)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deployments(), st.floats(1.0, 2.0))
def test_more_gpu_memory_never_makes_a_feasible_layout_infeasible(cat, d, factor):
    s = stack_with(**d)
    arch, w = architecture_of(s.models[0], cat), workload_of(s.models[0])
    for gpu_gib in (14.6, 22.0, 44.5, 79.2):
        layout = Layout(tensor_parallel=1) if w.runtime != "ollama" else Layout(layer_split=1)
        if estimate(arch, w, layout, gpu_gib, cat).fits:
            assert estimate(arch, w, layout, gpu_gib * factor, cat).fits


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deployments(), st.integers(1, 4), st.integers(1, 8), st.sampled_from([1, 2, 4, 8]))
def test_more_context_or_concurrency_never_lowers_the_requirement(cat, d, more_ctx, more_seqs, tp):
    s = stack_with(**d)
    arch, w = architecture_of(s.models[0], cat), workload_of(s.models[0])
    layout = Layout(tensor_parallel=tp) if w.runtime != "ollama" else Layout(layer_split=tp)
    base = estimate(arch, w, layout, 80.0, cat).per_gpu_required_gib
    longer = Workload(**{**w.__dict__, "max_model_len": w.max_model_len * more_ctx})
    wider = Workload(**{**w.__dict__, "concurrency": w.concurrency + more_seqs})
    assert estimate(arch, longer, layout, 80.0, cat).per_gpu_required_gib >= base
    assert estimate(arch, wider, layout, 80.0, cat).per_gpu_required_gib >= base


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deployments())
def test_the_chosen_instance_is_never_dearer_than_another_feasible_one(cat, d):
    s = stack_with(**d)
    spec = s.models[0]
    arch, w = architecture_of(spec, cat), workload_of(spec)
    best = cheapest(arch, w, "ec2", s, cat)
    for inst in cat.instances.values():
        if inst.purchase != "on-demand":
            continue
        c = evaluate(arch, w, inst, 1, s, cat)
        if c is not None:
            assert best is not None and best.hourly_usd <= c.hourly_usd, (inst.name, best and best.instance.name)
    if best is not None:
        assert best.memory.per_gpu_required_gib <= best.memory.per_gpu_usable_gib


def test_tensor_parallel_sizes_divide_heads_and_respect_kv_heads(cat):
    nomic = cat.models["nomic-ai/nomic-embed-text-v1.5"].architecture       # 12 heads
    assert tensor_parallel_options(nomic, 8) == [1, 2, 4]
    qwen7 = cat.models["Qwen/Qwen2.5-Coder-7B-Instruct"].architecture       # 28 heads, 4 KV heads
    assert tensor_parallel_options(qwen7, 8) == [1, 2, 4]
    llama = cat.models["meta-llama/Llama-3.1-70B-Instruct"].architecture    # 64 heads, 8 KV heads
    assert tensor_parallel_options(llama, 4) == [1, 2, 4]


def test_llama_8b_bf16_short_context_lands_on_one_24gb_class_gpu():
    p = plan_of(max_model_len=8192, concurrency=2)
    assert p.gpu_count == 1 and p.tensor_parallel_size == 1
    assert p.gpu_name in ("A10G", "L4")          # bf16 needs Ampere or newer: never a T4
    assert p.memory.per_gpu_required_gib <= p.memory.per_gpu_usable_gib


def test_bf16_is_never_placed_on_a_t4_but_fp16_may_be(cat):
    p = plan_of(model="nomic-ai/nomic-embed-text-v1.5", max_model_len=2048, precision="bf16")
    assert p.gpu_name != "T4"
    p = plan_of(model="nomic-ai/nomic-embed-text-v1.5", max_model_len=2048, precision="fp16")
    assert p.gpu_name == "T4" and p.instance_type == "g4dn.xlarge"


def test_70b_needs_several_gpus_and_uses_all_it_pays_for():
    p = plan_of(model="meta-llama/Llama-3.1-70B-Instruct", max_model_len=8192, concurrency=8)
    assert p.tensor_parallel_size == p.gpu_count >= 2
    assert p.memory.per_gpu_weights_gib < 131.5 / 2


def test_forced_instance_that_cannot_hold_the_model_is_an_error_with_numbers():
    with pytest.raises(PlanningError) as exc:
        plan_of(model="meta-llama/Llama-3.1-70B-Instruct", instance_type="g5.xlarge")
    err = exc.value.errors[0]
    assert err.path == "llm-platform:models[0].instance_type"
    assert "GiB per GPU" in err.message and "g5.xlarge" in err.message


def test_forced_instance_that_fits_but_costs_more_is_kept_with_a_note():
    p = plan_of(instance_type="p5.48xlarge")
    assert p.instance_type == "p5.48xlarge" and p.tensor_parallel_size == 8
    assert any("would serve it for" in n for n in p.notes)


def test_when_the_kv_cache_is_too_big_the_advice_is_context_concurrency_or_fp8_cache():
    with pytest.raises(PlanningError) as exc:
        plan_of(model="meta-llama/Llama-3.1-405B-Instruct", max_model_len=131072, concurrency=32)
    err = exc.value.errors[0]
    assert err.path == "llm-platform:models[0]" and "fits no on-demand instance" in err.message
    assert "KV cache 252.0" in err.message            # 131072 x 32 tokens x 504 KiB / 8 GPUs
    # 18: (240.7 usable - 94.5 weights - 1.6 overhead) / 7.875 GiB per 128k sequence per GPU
    for fix in ("concurrency <= 18 on p6-b300.48xlarge", "max_model_len <=", "kv_cache_dtype fp8", "platform eks"):
        assert fix in err.message


def test_when_the_weights_are_too_big_the_advice_is_precision_or_more_nodes():
    with pytest.raises(PlanningError) as exc:
        plan_of(model="meta-llama/Llama-3.1-405B-Instruct", instance_type="p5.48xlarge")
    msg = exc.value.errors[0].message
    assert "does not fit p5.48xlarge" in msg and "weights 94.5" in msg
    assert "precision fp8 on p5.48xlarge ($55.04/h)" in msg and "2 x p5.48xlarge in pipeline parallel" in msg
    assert "concurrency <=" not in msg                 # no amount of context trimming makes 756 GiB fit


def test_405b_bf16_forced_onto_p5_spans_nodes_on_eks_only():
    with pytest.raises(PlanningError):
        plan_of(model="meta-llama/Llama-3.1-405B-Instruct", instance_type="p5.48xlarge")
    p = plan_of(model="meta-llama/Llama-3.1-405B-Instruct", instance_type="p5.48xlarge", platform="eks")
    assert (p.tensor_parallel_size, p.pipeline_parallel_size, p.nodes_per_replica) == (8, 2, 2)
    assert p.gpus_per_replica == 16 and p.instances == 2
    assert p.hourly_cost_usd == pytest.approx(2 * 55.04)


def test_ollama_has_no_tensor_parallelism_and_splits_layers_when_needed():
    small = plan_of(model="Qwen/Qwen2.5-Coder-7B-Instruct", runtime="ollama", precision="q4_k_m")
    assert small.tensor_parallel_size == 1 and small.gpus_per_replica == 1
    big = plan_of(model="meta-llama/Llama-3.1-70B-Instruct", runtime="ollama", precision="q4_k_m",
                  instance_type="g5.12xlarge", max_model_len=8192, concurrency=2)
    assert big.tensor_parallel_size == 1 and big.gpus_per_replica == 4


def test_fp8_kv_cache_doubles_the_sequences_that_fit():
    a = plan_of(instance_type="g6e.xlarge", max_model_len=32768, concurrency=4)
    b = plan_of(instance_type="g6e.xlarge", max_model_len=32768, concurrency=4, kv_cache_dtype="fp8")
    assert b.max_concurrency_at_full_context >= 2 * a.max_concurrency_at_full_context - 1


def test_price_overrides_and_discounts_drive_the_choice():
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:pricing"] = {"discount_percent": 50}
    s = parse(raw)
    full = plan_of()
    half = plan_model(s.models[0], 0, s)
    assert half.instance_type == full.instance_type
    assert half.hourly_cost_usd == pytest.approx(full.hourly_cost_usd / 2)
    raw["llm-platform:pricing"] = {"hourly_usd": {"g6e.xlarge": 0.10}}
    s = parse(raw)
    assert plan_model(s.models[0], 0, s).instance_type == "g6e.xlarge"


def test_capacity_block_instances_are_chosen_only_when_forced(cat):
    p = plan_of(model="meta-llama/Llama-3.1-405B-Instruct", precision="fp8", max_model_len=8192, concurrency=4)
    assert cat.instances[p.instance_type].purchase == "on-demand"
    forced = plan_of(model="meta-llama/Llama-3.1-405B-Instruct", precision="fp8", instance_type="p5e.48xlarge")
    assert forced.instance_type == "p5e.48xlarge"


def test_costs_follow_replicas_and_autoscaling():
    p = plan_of(autoscaling={"min": 2, "max": 5})
    assert p.instances == 2
    assert p.monthly_cost_usd == pytest.approx(p.hourly_cost_usd * 2 * 730, abs=0.01)
    assert p.monthly_cost_max_usd == pytest.approx(p.hourly_cost_usd * 5 * 730, abs=0.01)


def test_startup_time_and_volume_follow_the_weights():
    small, big = plan_of(), plan_of(model="meta-llama/Llama-3.1-70B-Instruct")
    assert big.startup_seconds > small.startup_seconds >= 180
    assert big.volume_gib > small.volume_gib >= small.memory.weights_gib * 2


def test_every_model_of_a_stack_is_reported_when_several_cannot_be_planned():
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:models"] = [
        {"name": "a", "model": "meta-llama/Llama-3.1-70B-Instruct", "instance_type": "g4dn.xlarge",
         "precision": "fp16"},
        {"name": "b", "model": "meta-llama/Llama-3.1-8B-Instruct"},
        {"name": "c", "model": "meta-llama/Llama-3.1-405B-Instruct", "max_model_len": 131072, "concurrency": 64},
    ]
    with pytest.raises(PlanningError) as exc:
        plan_stack(parse(raw))
    assert [e.path for e in exc.value.errors] == ["llm-platform:models[0].instance_type", "llm-platform:models[2]"]


def test_embedders_report_no_kv_cache_and_no_sequence_limit():
    p = plan_of(model="BAAI/bge-large-en-v1.5", max_model_len=512, precision="fp16")
    assert p.memory.kv_cache_gib == 0 and p.max_concurrency_at_full_context is None and p.task == "embed"
