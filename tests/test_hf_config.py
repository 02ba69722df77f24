"""Real config.json files, pasted verbatim, size as their published parameter counts say; the stack
config takes them under `architecture` or as `architecture_file`; unknown families get one clear error."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import yaml

from llm_platform.catalog import hf_config
from llm_platform.catalog.hf_config import HfConfigError, from_config
from llm_platform.settings import ConfigErrors, parse
from llm_platform.sizing.memory import (
    GIB,
    Layout,
    Workload,
    estimate,
    kv_bytes_per_token_per_layer,
    kv_tokens_per_layer,
)
from llm_platform.sizing.params import parameter_count
from llm_platform.sizing.planner import plan_stack
from tests.conftest import MINIMAL

DATA = Path(__file__).parent / "data" / "hf_configs"
SOURCES = yaml.safe_load((DATA / "SOURCES.yaml").read_text())["models"]


def _config(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _stack(**model) -> dict:
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:models"] = [{"name": "m", **model}]
    return raw


def test_at_least_twelve_families_have_a_real_config_with_a_cited_count():
    families = {_config(f)["model_type"] for f in SOURCES}
    assert len(families) >= 12, families
    assert families <= set(hf_config.SUPPORTED_MODEL_TYPES)
    assert {p.name for p in DATA.glob("*.json")} == set(SOURCES), "every fixture is listed with its source"
    for entry in SOURCES.values():
        assert entry["config_source"].startswith("https://huggingface.co/") and entry["published_source"]


@pytest.mark.parametrize("fixture", sorted(SOURCES))
def test_real_config_sizes_within_one_percent_of_the_published_count(fixture):
    entry = SOURCES[fixture]
    model = from_config(_config(fixture), fixture)
    derived = parameter_count(model.architecture)
    assert derived == pytest.approx(entry["published_parameters"], rel=0.01), (fixture, derived)


@pytest.mark.parametrize("fixture", sorted(SOURCES))
def test_kv_bytes_per_token_are_exact(fixture):
    arch = from_config(_config(fixture), fixture).architecture
    assert kv_bytes_per_token_per_layer(arch, 2.0) * arch.num_hidden_layers == SOURCES[fixture]["kv_bytes_per_token"]


def test_exact_published_totals_are_reproduced_to_the_parameter():
    exact = {f: e for f, e in SOURCES.items() if not str(e["published_source"]).startswith("rounded")}
    exact.pop("BAAI__bge-large-en-v1.5.json")       # its total counts a 512-element position_ids buffer
    assert len(exact) >= 12
    for fixture, entry in exact.items():
        assert parameter_count(from_config(_config(fixture)).architecture) == entry["published_parameters"], fixture


def test_pasted_config_plans_exactly_as_the_hand_translated_registry_block(cat):
    """The registry's hand-written blocks are the reference: the same models from config.json agree."""
    pairs = {"meta-llama__Llama-3.1-8B-Instruct.json": "meta-llama/Llama-3.1-8B-Instruct",
             "mistralai__Mixtral-8x7B-Instruct-v0.1.json": "mistralai/Mixtral-8x7B-Instruct-v0.1",
             "bigcode__starcoder2-15b.json": "bigcode/starcoder2-15b",
             "nomic-ai__nomic-embed-text-v1.5.json": "nomic-ai/nomic-embed-text-v1.5"}
    for fixture, model_id in pairs.items():
        mine = from_config(_config(fixture)).architecture
        ref = cat.models[model_id].architecture
        assert parameter_count(mine) == parameter_count(ref), fixture
        assert kv_bytes_per_token_per_layer(mine, 2) == kv_bytes_per_token_per_layer(ref, 2), fixture
        raw = _stack(model="acme/" + fixture, architecture=_config(fixture), max_model_len=2048)
        reg = _stack(model=model_id, max_model_len=2048)
        (a,), (b,) = plan_stack(parse(raw)), plan_stack(parse(reg))
        assert (a.instance_type, a.tensor_parallel_size, a.parameters) == (b.instance_type, b.tensor_parallel_size,
                                                                             b.parameters), fixture
        assert a.memory.weights_gib == pytest.approx(b.memory.weights_gib), fixture


def test_implied_fields_are_derived():
    qwen2 = from_config(_config("Qwen__Qwen2.5-7B-Instruct.json")).architecture
    assert qwen2.attention_bias == "qkv" and qwen2.head_size == 128        # 3584 / 28, no head_dim key
    sc2 = from_config(_config("bigcode__starcoder2-15b.json")).architecture
    assert (sc2.attention_bias, sc2.mlp_bias, sc2.norm, sc2.mlp) == ("all", True, "layernorm", "plain")
    g2 = from_config(_config("google__gemma-2-9b-it.json")).architecture
    assert g2.norms_per_layer == 4 and g2.tie_word_embeddings          # Gemma2Config default: tied
    ds = from_config(_config("deepseek-ai__DeepSeek-V3.json"))
    a = ds.architecture
    assert (a.num_experts, a.first_dense_layers, a.router_bias) == (256, 3, True)
    assert ds.precision == "fp8" and ds.quantization.weight_block_size == (128, 128)
    oss = from_config(_config("openai__gpt-oss-20b.json"))
    assert oss.quantization.quant_method == "mxfp4" and "lm_head" in oss.quantization.ignored
    assert oss.architecture.attention_sinks and oss.architecture.sliding_window_layers == 12


def test_context_window_follows_vllms_rope_scaling_rule():
    assert from_config(_config("meta-llama__Llama-3.1-8B-Instruct.json")).architecture.max_position_embeddings == 131072
    # yarn: original_max_position_embeddings x factor (DeepSeek: 4096 x 40)
    assert from_config(_config("deepseek-ai__DeepSeek-V3.json")).architecture.max_position_embeddings == 163840
    qwen = _config("Qwen__Qwen3-8B.json")
    qwen["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert from_config(qwen).architecture.max_position_embeddings == 131072
    # Gemma 3's max_position_embeddings already includes its linear factor 8
    assert from_config(_config("google__gemma-3-4b-it.json")).architecture.max_position_embeddings == 131072


def test_sliding_window_layers_keep_only_the_window_of_kv():
    g3 = from_config(_config("google__gemma-3-1b-it.json")).architecture
    assert (g3.sliding_window, g3.sliding_window_layers) == (512, 22)      # (i + 1) % 6: 4 of 26 layers are full
    # at 32k context and 8192-token chunks: 4 full layers keep 32768 tokens, 22 windowed ones 511 + 8192 tokens:
    # 544 blocks of 16, plus one because the window need not start on a block boundary
    kept = kv_tokens_per_layer(g3, 32768, 8192)
    assert kept * 26 == 4 * 32768 + 22 * (544 + 1) * 16
    w = Workload("vllm", "bf16", "auto", 32768, 8, 8192, 0.9)
    full = g3.model_copy(update={"sliding_window_layers": 0, "sliding_window": None})
    windowed_kv = estimate(g3, w, Layout(), 22.0, _cat()).kv_cache_gib
    assert windowed_kv < estimate(full, w, Layout(), 22.0, _cat()).kv_cache_gib / 2.5
    per_token = kv_bytes_per_token_per_layer(g3, 2.0)
    assert windowed_kv == pytest.approx(8 * per_token * (4 * 32768 + 22 * 545 * 16) / GIB)


def test_a_window_without_layer_types_windows_every_layer_as_the_pinned_vllm_does():
    # vLLM's create_engine_config sets the model-level window for models that are not interleaved
    sc2 = from_config(_config("bigcode__starcoder2-15b.json")).architecture
    assert (sc2.sliding_window, sc2.sliding_window_layers) == (4096, 40)
    phi = from_config(_config("microsoft__Phi-3-mini-4k-instruct.json")).architecture
    assert (phi.sliding_window, phi.sliding_window_layers) == (2047, 32)
    # Qwen names a window it does not use (use_sliding_window false), Mistral Small has none
    assert from_config(_config("Qwen__Qwen2.5-7B-Instruct.json")).architecture.sliding_window is None
    assert from_config(_config("mistralai__Mistral-Small-24B-Instruct-2501.json")).architecture.sliding_window is None
    # a window that covers the whole context keeps no less than the context, and no more
    assert kv_tokens_per_layer(sc2, 2048, 8192) == 2048
    assert kv_tokens_per_layer(sc2, 16384, 2048) == (math.ceil((4095 + 2048) / 16) + 1) * 16


def _cat():
    from llm_platform import catalog
    return catalog.load()


def test_unknown_model_type_is_one_error_naming_the_fields_needed():
    cfg = _config("meta-llama__Llama-3.1-8B-Instruct.json") | {"model_type": "falcon_h1", "_name_or_path": "tii/x"}
    with pytest.raises(HfConfigError) as exc:
        from_config(cfg)
    msg = str(exc.value)
    assert exc.value.key == "model_type" and "'falcon_h1' (tii/x)" in msg
    assert "num_hidden_layers" in msg and "num_key_value_heads" in msg and "write the architecture block" in msg
    errs = _errors(_stack(model="tii/x", architecture=cfg))
    assert list(errs) == ["llm-platform:models[0].architecture"]
    assert "architecture.model_type: 'falcon_h1' (tii/x) is not a family" in errs["llm-platform:models[0].architecture"]


def test_a_missing_key_names_its_path_and_the_model():
    cfg = _config("Qwen__Qwen3-30B-A3B.json")
    del cfg["moe_intermediate_size"]
    cfg["_name_or_path"] = "Qwen/Qwen3-30B-A3B"
    msg = _errors(_stack(model="q", architecture=cfg))["llm-platform:models[0].architecture"]
    assert msg.startswith("architecture.moe_intermediate_size: required to size Qwen/Qwen3-30B-A3B")


def test_the_issue_example_mistral_small_pasted_verbatim_plans():
    raw = _stack(model="mistralai/Mistral-Small-24B-Instruct-2501",
                 architecture=_config("mistralai__Mistral-Small-24B-Instruct-2501.json"))
    (plan,) = plan_stack(parse(raw))
    assert plan.parameters == 23572403200 and plan.precision == "bf16"
    assert plan.max_model_len == 8192 and plan.memory.kv_bytes_per_token == 163840


def test_architecture_file_is_read_relative_to_the_stack_file(tmp_path):
    (tmp_path / "models" / "qwen3").mkdir(parents=True)
    (tmp_path / "models" / "qwen3" / "config.json").write_text((DATA / "Qwen__Qwen3-8B.json").read_text())
    stack = tmp_path / "Pulumi.x.yaml"
    stack.write_text(yaml.safe_dump({"config": _stack(model="Qwen/Qwen3-8B", architecture_file="models/qwen3")}))
    from llm_platform.settings import load_stack
    cfg = load_stack(stack)
    assert parameter_count(cfg.models[0].architecture) == 8190735360
    assert cfg.models[0].max_model_len == 8192


def test_architecture_file_problems_are_config_errors(tmp_path):
    errs = _errors(_stack(model="x/y", architecture_file="nope/config.json"), base_dir=tmp_path)
    assert "cannot read" in errs["llm-platform:models[0].architecture_file"]
    (tmp_path / "config.json").write_text("{not json")
    errs = _errors(_stack(model="x/y", architecture_file="config.json"), base_dir=tmp_path)
    assert "is not JSON (line 1" in errs["llm-platform:models[0].architecture_file"]
    (tmp_path / "config.json").write_text((DATA / "Qwen__Qwen3-8B.json").read_text())
    errs = _errors(_stack(model="x/y", architecture_file="config.json", architecture={"model_type": "qwen3"}),
                   base_dir=tmp_path)
    assert "not both" in errs["llm-platform:models[0].architecture"]


def test_pre_quantised_checkpoint_sets_the_precision_and_refuses_another():
    fp8 = {"quant_method": "fp8", "weight_block_size": [128, 128], "activation_scheme": "dynamic"}
    cfg = _config("Qwen__Qwen3-8B.json") | {"quantization_config": fp8}
    assert parse(_stack(model="Qwen/Qwen3-8B-FP8", architecture=cfg)).models[0].precision == "fp8"
    errs = _errors(_stack(model="Qwen/Qwen3-8B-FP8", architecture=cfg, precision="bf16"))
    assert "pre-quantised checkpoint" in errs["llm-platform:models[0].precision"]


def test_torch_dtype_is_the_default_precision():
    cfg = _config("meta-llama__Llama-3.1-8B-Instruct.json") | {"torch_dtype": "float16"}
    assert parse(_stack(model="a/b", architecture=cfg)).models[0].precision == "fp16"


def test_our_own_architecture_block_still_works(cat):
    arch = cat.models["meta-llama/Llama-3.1-8B-Instruct"].architecture.model_dump(exclude_defaults=True)
    assert parse(_stack(model="acme/llama", architecture=arch)).models[0].precision == "bf16"


def _errors(raw: dict, base_dir=None) -> dict[str, str]:
    with pytest.raises(ConfigErrors) as exc:
        parse(raw, base_dir=base_dir)
    return {e.path: e.message for e in exc.value.errors}


def test_plan_cli_reads_architecture_file_beside_a_stack_file_anywhere(tmp_path, capsys):
    import plan
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "config.json").write_text((DATA / "google__gemma-2-9b-it.json").read_text())
    stack = tmp_path / "Pulumi.onboard.yaml"
    stack.write_text(yaml.safe_dump({"config": _stack(model="google/gemma-2-9b-it", architecture_file="models")}))
    assert plan.main(["--config", str(stack), "--json"]) == 0, capsys.readouterr().err
    (dep,) = json.loads(capsys.readouterr().out)["deployments"]
    assert dep["parameters"] == 9241705984 and dep["memory"]["kv_bytes_per_token"] == 344064


def test_the_checkpoints_quantization_config_is_kept_on_the_model_entry():
    raw = _stack(model="openai/gpt-oss-20b", architecture=_config("openai__gpt-oss-20b.json"))
    raw["llm-platform:models"].append({"name": "registry", "model": "meta-llama/Llama-3.1-8B-Instruct"})
    oss, registry = parse(raw).models
    q = oss.checkpoint.quantization
    assert (q.quant_method, q.ignored[-1]) == ("mxfp4", "lm_head") and q.raw["quant_method"] == "mxfp4"
    assert registry.checkpoint is None


def test_decode_reads_only_the_window_of_a_sliding_layer():
    from llm_platform.sizing import performance as perf
    cat = _cat()
    oss = from_config(_config("openai__gpt-oss-20b.json")).architecture
    full = oss.model_copy(update={"sliding_window": None, "sliding_window_layers": 0})
    hw = perf.hardware_of(cat.instances["p5.4xlarge"], cat)
    windowed = perf.decode_step(oss, "bf16", 2.0, Layout(), hw, 8, 65536)
    unwindowed = perf.decode_step(full, "bf16", 2.0, Layout(), hw, 8, 65536)
    kv_full = 8 * 65536 * kv_bytes_per_token_per_layer(oss, 2.0) * 24
    # half the layers read 128 tokens instead of 65536: the step moves about half the KV bytes less
    kv_rate = (hw.gpu.memory_bandwidth_gbps * 1e9 * (hw.attention_fraction or hw.memory_fraction)
               * 65536 / (65536 + hw.attention_half_context))
    saved = (unwindowed.memory_s - windowed.memory_s) * kv_rate
    assert saved == pytest.approx(kv_full * 12 / 24 * (1 - 128 / 65536), rel=1e-9)


HAND = yaml.safe_load((DATA / "hand_translated.yaml").read_text())


@pytest.mark.parametrize("fixture", sorted(SOURCES))
def test_config_json_maps_to_its_hand_translated_block_and_plans_the_same(fixture):
    from llm_platform.catalog.architecture import Architecture
    hand = Architecture(**HAND[fixture])
    assert from_config(_config(fixture)).architecture == hand
    context = min(4096, hand.max_position_embeddings)
    pasted = _stack(model="acme/x", architecture=_config(fixture), max_model_len=context, max_num_batched_tokens=8192)
    spec = parse(pasted).models[0]             # the checkpoint's own precision and layout (fp8 for DeepSeek-V3)
    layout = {"quantization": spec.quantization.model_dump(exclude_defaults=True)} if spec.quantization else {}
    written = _stack(model="acme/x", architecture=HAND[fixture], precision=spec.precision, max_model_len=context,
                     max_num_batched_tokens=8192, **layout)
    (a,), (b,) = plan_stack(parse(pasted)), plan_stack(parse(written))
    assert a.as_dict() == b.as_dict()


@pytest.mark.parametrize("quantization_config, precision", [
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "fp8"),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}, "awq"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True}, "gptq"),
    ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "bf16"),          # not the catalog's 4-bit gptq
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 8, "type": "float", "strategy": "channel"}}}, "ignore": ["lm_head"]}, "fp8"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 4, "type": "int", "strategy": "group", "group_size": 128}}}}, "awq"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "bf16"),
])
def test_a_pre_quantised_checkpoint_is_sized_as_it_is_served(quantization_config, precision):
    model = from_config(_config("Qwen__Qwen3-8B.json") | {"quantization_config": quantization_config})
    assert model.precision == precision
    assert model.quantization.raw == quantization_config
    assert (precision == "bf16") == any("upper bound" in n for n in model.notes)


def test_a_pasted_quantization_config_becomes_the_checkpoint_layout_the_sizing_weighs():
    pasted = _stack(model="deepseek-ai/DeepSeek-V3", architecture=_config("deepseek-ai__DeepSeek-V3.json"))
    spec = parse(pasted).models[0]
    assert spec.precision == "fp8" and spec.quantization.quant_method == "fp8"
    assert spec.quantization.weight_block_size == (128, 128)
    oss = parse(_stack(model="openai/gpt-oss-20b", architecture=_config("openai__gpt-oss-20b.json"))).models[0]
    assert oss.quantization is None and oss.precision == "bf16"      # mxfp4: not weighed yet, 16-bit upper bound
