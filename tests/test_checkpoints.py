"""Checkpoint layouts, the forced layout, MLA/MoE memory and the plan as the runtime's configuration (issue #12)."""
import copy

import pytest

from llm_platform.catalog.architecture import Architecture
from llm_platform.catalog.checkpoint import QuantizationSpec, QuantLayout
from llm_platform.serving.runtime import container_spec
from llm_platform.settings import ConfigErrors, parse
from llm_platform.sizing.memory import (
    GIB,
    Layout,
    Workload,
    block_size,
    estimate,
    kv_bytes_per_token_per_layer,
    sequence_tokens,
    weight_bytes,
)
from llm_platform.sizing.params import module_names, tensors
from llm_platform.sizing.planner import PlanningError, plan_model
from tests.conftest import MINIMAL

LLAMA8, LLAMA70 = "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"
FP8_405B = "meta-llama/Llama-3.1-405B-Instruct-FP8"


def _stack(**model):
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:models"][0].update(model)
    return parse(raw)


def _errors(**model):
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:models"][0].update(model)
    with pytest.raises(ConfigErrors) as exc:
        parse(raw)
    return {e.path: e.message for e in exc.value.errors}


def _plan(**model):
    s = _stack(**model)
    return plan_model(s.models[0], 0, s)


# ----------------------------------------------------------------------------- checkpoint layouts

def test_an_fp8_checkpoint_that_keeps_attention_in_bf16_weighs_about_a_fifth_more(cat):
    arch = cat.models[LLAMA70].architecture
    plain = weight_bytes(arch, "fp8")
    attn16 = weight_bytes(arch, "fp8", QuantLayout("fp8", modules_to_not_convert=("re:.*self_attn.*",)))
    attention = sum(t.numel for t in tensors(arch) if t.name.startswith("attn_") and t.role == "linear")
    assert attn16 - plain == pytest.approx(attention, rel=0.001)           # one more byte per attention weight
    first_last = QuantLayout("fp8", modules_to_not_convert=("model.layers.0", "model.layers.79", "self_attn"))
    assert weight_bytes(arch, "fp8", first_last) > attn16                  # whole blocks stay 16-bit too
    assert 1.10 < weight_bytes(arch, "fp8", first_last) / plain < 1.30


def test_metas_405b_fp8_matches_what_vllm_loaded_and_the_naive_estimate_does_not(cat):
    """vllm#6746: 'Loading model weights took 57.7520 GB' on each of 8 H100s."""
    info = cat.models[FP8_405B]
    w = Workload("vllm", "fp8", "auto", 8192, 8, 8192, 0.9, info.quantization.layout())
    per_gpu = estimate(info.architecture, w, Layout(tensor_parallel=8), 79.19, cat).per_gpu_weights_gib
    naive = estimate(info.architecture, Workload("vllm", "fp8", "auto", 8192, 8, 8192, 0.9), Layout(tensor_parallel=8),
                     79.19, cat).per_gpu_weights_gib
    assert per_gpu == pytest.approx(57.752, rel=0.03)
    assert naive < 57.752 * 0.85                                           # the dangerous direction


def test_block_and_channel_scales_are_counted(cat):
    arch = cat.models[LLAMA8].architecture
    tensor = weight_bytes(arch, "fp8", QuantLayout("fp8"))
    block = weight_bytes(arch, "fp8", QuantLayout("fp8", weight_block_size=(128, 128)))
    channel = weight_bytes(arch, "fp8", QuantLayout("fbgemm_fp8", scale_strategy="channel"))
    linear = [t for t in tensors(arch) if t.role == "linear" and t.name != "output"]
    assert block - tensor == pytest.approx(sum(-(-t.out_features // 128) * -(-t.in_features // 128) * 4 - 4
                                               for t in linear))
    assert channel - tensor == pytest.approx(sum(t.out_features * 4 - 4 for t in linear))


def test_module_patterns_match_the_way_the_runtimes_match_them(cat):
    arch = cat.models["mistralai/Mixtral-8x7B-Instruct-v0.1"].architecture
    names = {t.name: module_names(t) for t in tensors(arch) if t.layer == 1}
    assert "model.layers.1.self_attn.q_proj" in names["attn_q"]
    assert "model.layers.1.block_sparse_moe.experts.0.w1" in names["ffn_gate_exps"]
    q = QuantLayout("compressed-tensors", modules_to_not_convert=("re:.*block_sparse_moe.gate$", "model.layers.1",
                                                                  "*.o_proj"))
    assert q.keeps_16bit(names["attn_output"]) and q.keeps_16bit(names["ffn_up_exps"])
    layer11 = [module_names(t) for t in tensors(arch) if t.layer == 11 and t.name == "attn_q"][0]
    assert not q.keeps_16bit(layer11)                      # "model.layers.1" is not a prefix of layer 11
    with pytest.raises(ValueError, match="regular expression"):
        QuantLayout("fp8", modules_to_not_convert=("re:([",))


def test_config_json_spellings_are_accepted_and_merged():
    q = QuantizationSpec(quant_method="compressed-tensors", ignore=["lm_head"], exclude_modules=["*.gate"],
                         ignored_layers=["model.layers.0"])
    assert set(q.layout().modules_to_not_convert) == {"lm_head", "*.gate", "model.layers.0"}
    with pytest.raises(ValueError, match="unknown quant_method"):
        QuantizationSpec(quant_method="bitsandbytes")


def test_a_registry_checkpoint_defaults_to_its_precision_and_is_sized_with_its_layout():
    p = _plan(model=FP8_405B, max_model_len=8192, concurrency=4)
    assert p.precision == "fp8" and p.tensor_parallel_size == 8
    assert p.memory.per_gpu_weights_gib == pytest.approx(56.7, abs=0.5)


def test_a_checkpoint_needs_the_precision_that_loads_it():
    msg = _errors(model=FP8_405B, precision="bf16")["llm-platform:models[0].quantization"]
    assert FP8_405B in msg and "fbgemm_fp8" in msg and "use precision fp8" in msg
    msg = _errors(model=LLAMA8, precision="fp8",
                  quantization={"quant_method": "awq"})["llm-platform:models[0].quantization"]
    assert "awq" in msg and "use precision awq or gptq" in msg


def test_a_custom_checkpoint_block_in_the_stack_config_changes_the_plan():
    base = _plan(model=LLAMA70, precision="fp8", max_model_len=4096, concurrency=1, instance_type="p5.4xlarge",
                 gpu_memory_utilization=0.95)
    kept = _plan(model=LLAMA70, precision="fp8", max_model_len=4096, concurrency=1, instance_type="p5.48xlarge",
                 quantization={"quant_method": "fp8", "ignored_layers": ["re:.*self_attn.*"]})
    assert kept.memory.weights_gib > base.memory.weights_gib * 1.10


# ----------------------------------------------------------------------------- the forced layout

def test_a_forced_tensor_parallel_size_is_the_layout_the_plan_uses():
    free = _plan(model=LLAMA70, precision="fp8", instance_type="p5.48xlarge")
    forced = _plan(model=LLAMA70, precision="fp8", instance_type="p5.48xlarge", tensor_parallel_size=4)
    assert free.tensor_parallel_size == 8 and forced.tensor_parallel_size == 4
    assert forced.gpus_per_replica == 4
    assert any("uses 4 of p5.48xlarge's 8 GPUs" in n for n in forced.notes)


@pytest.mark.parametrize("changes, fragment", [
    (dict(tensor_parallel_size=3), "is not one of 1, 2, 4, 8"),
    (dict(model="Qwen/Qwen2.5-Coder-7B-Instruct", tensor_parallel_size=8), "does not divide its 28 attention heads"),
    (dict(runtime="ollama", precision="q4_k_m", tensor_parallel_size=2), "ollama has no tensor parallelism"),
    (dict(instance_type="g6e.xlarge", tensor_parallel_size=2), "g6e.xlarge has 1"),
])
def test_a_forced_tensor_parallel_size_is_checked_not_trusted(changes, fragment):
    msg = _errors(**{"model": LLAMA8, **changes})["llm-platform:models[0].tensor_parallel_size"]
    assert fragment in msg and changes.get("model", LLAMA8) in msg


def test_a_forced_tp_that_cannot_fit_says_so_at_its_key_with_what_would():
    with pytest.raises(PlanningError) as exc:
        _plan(model="meta-llama/Llama-3.1-405B-Instruct", tensor_parallel_size=2, max_model_len=8192)
    err = exc.value.errors[0]
    assert err.path == "llm-platform:models[0].tensor_parallel_size"
    assert "forced tensor_parallel_size 2" in err.message and "tensor_parallel_size 8 (or remove it)" in err.message


# ----------------------------------------------------------------------------- MLA and MoE

DEEPSEEK_V3 = Architecture(num_hidden_layers=61, hidden_size=7168, intermediate_size=18432, num_attention_heads=128,
                           num_key_value_heads=128, vocab_size=129280, max_position_embeddings=163840,
                           num_experts=256, num_experts_per_tok=8, moe_intermediate_size=2048, num_shared_experts=1,
                           first_dense_layers=3, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                           qk_rope_head_dim=64, v_head_dim=128)


def test_mla_caches_one_576_element_latent_per_layer_in_64_token_pages_on_every_rank(cat):
    assert kv_bytes_per_token_per_layer(DEEPSEEK_V3, 2, tp=8) == 576 * 2           # replicated, not split
    assert kv_bytes_per_token_per_layer(DEEPSEEK_V3, 1, tp=8) == 576
    assert block_size(DEEPSEEK_V3) == 64 and sequence_tokens(DEEPSEEK_V3, 1000) == 1024
    assert sequence_tokens(DEEPSEEK_V3, 1100) == 1280                       # whole 256-token pages of any backend
    w = Workload("vllm", "fp8", "auto", 131072, 8, 8192, 0.9)
    mem = estimate(DEEPSEEK_V3, w, Layout(tensor_parallel=8), cat.gpus["H200"].memory_gib, cat)
    assert mem.per_gpu_kv_cache_gib == pytest.approx(8 * 131072 * 61 * 1152 / GIB)


def test_moe_activation_grows_with_the_routed_tokens_and_shared_experts(cat):
    w = Workload("vllm", "fp8", "auto", 8192, 1, 8192, 0.9)
    no_shared = DEEPSEEK_V3.model_copy(update={"num_shared_experts": 0})
    act = estimate(DEEPSEEK_V3, w, Layout(tensor_parallel=8), 140.0, cat).activation_gib
    # fused_moe cache3 alone: 8192 tokens x 8 experts x 7168 x 2 B
    assert act * GIB >= 8192 * 8 * 7168 * 2
    assert act > estimate(no_shared, w, Layout(tensor_parallel=8), 140.0, cat).activation_gib
    more = Workload("vllm", "fp8", "auto", 8192, 1, 16384, 0.9)
    assert estimate(DEEPSEEK_V3, more, Layout(tensor_parallel=8), 140.0, cat).activation_gib > act


# ----------------------------------------------------------------------------- the plan is the configuration

def test_vllm_gets_exactly_the_planned_kv_pool_and_the_plan_says_so():
    p = _plan(model=LLAMA8, max_model_len=8192, concurrency=16)
    args = list(container_spec(p, 4096).args)
    pool = int(args[args.index("--kv-cache-memory-bytes") + 1])
    assert pool == p.kv_cache_memory_bytes == 16 * 8192 * 131072            # 16 sequences x 128 KiB per token
    assert args[args.index("--max-num-seqs") + 1] == "16"
    assert args[args.index("--max-num-batched-tokens") + 1] == str(p.max_num_batched_tokens)
    d = p.as_dict()
    assert d["memory"]["kv_cache_memory_bytes"] == pool and d["memory"]["margin_gib"] >= 0.15
    assert d["runtime_memory"]["flags"]["--kv-cache-memory-bytes"] == pool
    assert any("--kv-cache-memory-bytes" in n and "margin" in n for n in p.notes)
    # what is planned (CUDA graphs included) plus the context and NCCL plus the margin is the whole GPU
    m = p.memory
    assert m.per_gpu_required_gib + m.outside_budget_gib + m.margin_gib == pytest.approx(p.gpu_memory_gib)


def test_tgi_and_ollama_get_the_plan_in_their_own_terms():
    from llm_platform.sizing import planner
    p = _plan(model=LLAMA8, max_model_len=4096, concurrency=8)
    tgi = planner.DeploymentPlan(**{**p.__dict__, "runtime": "tgi"})
    args = list(container_spec(tgi, 1024).args)
    assert args[args.index("--max-batch-total-tokens") + 1] == str(8 * 4096)
    assert "--kv-cache-memory-bytes" not in args
    assert tgi.runtime_memory["flags"]["--max-total-tokens"] == 4096
    o = _plan(model=LLAMA8, runtime="ollama", precision="q4_k_m", max_model_len=4096, concurrency=2)
    assert o.kv_cache_memory_bytes == 0 and o.runtime_memory["flags"]["OLLAMA_NUM_PARALLEL"] == 2
    assert container_spec(o, 1024).env["OLLAMA_NUM_PARALLEL"] == "2"


def test_the_issues_tight_fit_plans_on_one_h100():
    """70B FP8 at 4k on one 80 GB GPU at the 0.95 utilization vLLM served it with (Lambda's table)."""
    p = _plan(model=LLAMA70, precision="fp8", max_model_len=4096, concurrency=1, instance_type="p5.4xlarge",
              gpu_memory_utilization=0.95)
    assert p.tensor_parallel_size == 1 and p.memory.fits and p.memory.margin_gib >= 0.15


def test_a_checkpoint_that_fits_nowhere_forced_gets_advice_not_a_traceback():
    with pytest.raises(PlanningError) as exc:
        _plan(model=FP8_405B, instance_type="p5.4xlarge", max_model_len=8192)
    err = exc.value.errors[0]
    assert err.path == "llm-platform:models[0].instance_type"
    assert "does not fit p5.4xlarge" in err.message and "weights" in err.message


def test_a_config_json_quantization_config_is_read_for_what_sizes_it():
    """What onboarding (config.json) hands over: the raw block, extra keys and all."""
    ds = QuantizationSpec.from_quantization_config(
        {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]})
    assert ds.layout().weight_block_size == (128, 128)
    ct = QuantizationSpec.from_quantization_config(
        {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head", "re:.*mlp.gate$"],
         "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float",
                                                                          "strategy": "channel"}}}})
    assert ct.layout().scale_strategy == "channel" and "lm_head" in ct.layout().modules_to_not_convert
    awq = QuantizationSpec.from_quantization_config({"quant_method": "awq_marlin", "bits": 4, "group_size": 64,
                                                     "zero_point": True, "version": "gemm"})
    assert awq.quant_method == "awq" and awq.layout().group_size == 64


def test_a_checkpoint_with_16_bit_attention_also_reads_more_bytes_per_decode_step(cat):
    from llm_platform.sizing import performance as perf
    info = cat.models[FP8_405B]
    hw = perf.hardware_of(cat.instances["p5.48xlarge"], cat)
    layout = Layout(tensor_parallel=8)
    naive = perf.decode_step(info.architecture, "fp8", 2, layout, hw, 1, 1024)
    real = perf.decode_step(info.architecture, "fp8", 2, layout, hw, 1, 1024, info.quantization.layout())
    assert real.memory_s > naive.memory_s * 1.15
    p = _plan(model=FP8_405B, max_model_len=8192, concurrency=4)      # the planner uses the layout too
    hw = perf.hardware_of(cat.instances[p.instance_type], cat)
    step = perf.decode_step(info.architecture, "fp8", 2, Layout(tensor_parallel=p.tensor_parallel_size), hw, 1, 8192,
                            info.quantization.layout())
    assert p.throughput.decode_tokens_per_s_single == pytest.approx(1 / step.seconds, rel=0.01)


def test_deepseek_sparse_attention_pages_its_fp8_latent_and_the_indexer_keys(cat):
    """DeepSeek-V3.2: vLLM's fp8_ds_mla layout is 656 bytes per token and layer (512 fp8 + 4 fp32 scales +
    64 bf16 rope values), plus the lightning indexer's 128-byte fp8 key and its fp32 scale: 37 % more than
    "576 elements at one byte", which is what promised ~30 % too many long sequences."""
    v32 = DEEPSEEK_V3.model_copy(update={"index_head_dim": 128})
    assert kv_bytes_per_token_per_layer(v32, 1, tp=8) == 656 + 132
    assert kv_bytes_per_token_per_layer(v32, 2, tp=8) == 1152 + 132
    assert kv_bytes_per_token_per_layer(DEEPSEEK_V3, 1, tp=8) == 576
    with pytest.raises(ValueError, match="goes with multi-head latent attention"):
        Architecture(**{**cat.models[LLAMA8].architecture.model_dump(), "index_head_dim": 128})


def test_keeping_modules_in_16_bit_weighs_between_the_plain_format_and_bf16():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tests.test_memory import dense_architectures
    patterns = st.lists(st.sampled_from(["lm_head", "self_attn", "mlp", "re:.*\\.k_proj$", "model.layers.0",
                                         "*.down_proj", "re:.*layers\\.[12]\\..*"]), max_size=4)

    @settings(max_examples=60, deadline=None)
    @given(dense_architectures(), patterns, st.sampled_from(["fp8", "awq"]))
    def check(arch, keep, precision):
        q = QuantLayout("fp8" if precision == "fp8" else "awq", modules_to_not_convert=tuple(keep))
        assert weight_bytes(arch, precision) <= weight_bytes(arch, precision, q) <= weight_bytes(arch, "bf16") * 1.001
    check()
