"""The catalog's facts against their sources: AWS's instance data, published parameter counts,
published GGUF file sizes, GGML block layouts."""
import gzip
import json
import os

import pytest

from llm_platform.sizing.memory import weight_bytes
from llm_platform.sizing.params import parameter_count
from tests.conftest import ROOT

REQUIRED_MODELS = [
    "codellama/CodeLlama-7b-Instruct-hf", "codellama/CodeLlama-13b-Instruct-hf", "codellama/CodeLlama-34b-Instruct-hf",
    "deepseek-ai/deepseek-coder-33b-instruct", "deepseek-ai/DeepSeek-Coder-V2-Instruct",
    "Qwen/Qwen2.5-Coder-7B-Instruct", "Qwen/Qwen2.5-Coder-32B-Instruct", "bigcode/starcoder2-15b",
    "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-405B-Instruct",
    "mistralai/Mistral-Nemo-Instruct-2407", "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "nomic-ai/nomic-embed-text-v1.5", "BAAI/bge-large-en-v1.5",
]
REQUIRED_FAMILIES = {"g4dn", "g5", "g6", "g6e", "p4d", "p4de", "p5", "p5e", "p5en"}


@pytest.fixture(scope="module")
def aws():
    import moto
    path = os.path.join(os.path.dirname(moto.__file__), "ec2", "resources", "instance_types.json.gz")
    with gzip.open(path, "rt") as fh:
        return json.load(fh)


def test_every_instance_matches_aws_instance_type_data(cat, aws):
    for name, inst in cat.instances.items():
        assert name in aws, f"{name} is not an EC2 instance type in AWS's data"
        info = aws[name]
        gpu = info["GpuInfo"]["Gpus"][0]
        assert (inst.gpu, inst.gpu_count, inst.gpu_memory_mib) == (
            gpu["Name"], gpu["Count"], gpu["MemoryInfo"]["SizeInMiB"]), name
        assert inst.vcpus == info["VCpuInfo"]["DefaultVCpus"], name
        assert inst.memory_mib == info["MemoryInfo"]["SizeInMiB"], name


def test_catalog_covers_every_size_of_the_required_families(cat, aws):
    families = {n.split(".")[0] for n in cat.instances}
    assert REQUIRED_FAMILIES <= families
    assert "p5.4xlarge" in cat.instances
    for name, info in aws.items():
        if name.split(".")[0] in REQUIRED_FAMILIES and info.get("GpuInfo"):
            assert name in cat.instances, f"{name} is missing from the catalog"


def test_every_instance_has_gpu_facts_price_and_usable_memory_below_aws_figure(cat):
    for inst in cat.instances.values():
        gpu = cat.gpu_of(inst)
        assert inst.hourly_usd > 0
        # CUDA sees less than the marketing figure; sizing against AWS's number would overstate it
        assert gpu.cuda_total_mib <= inst.gpu_memory_mib + 2048, inst.name
        assert gpu.cuda_total_mib >= inst.gpu_memory_mib * 0.9, inst.name


def test_prices_are_dated_and_sourced(cat):
    assert cat.prices_as_of and cat.prices_source and cat.prices_region == "us-east-1"


def test_a_single_h100_costs_an_eighth_of_eight():
    from llm_platform import catalog
    c = catalog.load()
    assert c.instances["p5.4xlarge"].hourly_usd == pytest.approx(c.instances["p5.48xlarge"].hourly_usd / 8, rel=0.01)


@pytest.mark.parametrize("model_id", REQUIRED_MODELS)
def test_registry_has_the_guides_models_with_sources(cat, model_id):
    info = cat.models[model_id]
    assert info.config_source.startswith("https://huggingface.co/")
    assert info.published_parameters_source
    assert info.context_window <= info.architecture.max_position_embeddings


@pytest.mark.parametrize("model_id", REQUIRED_MODELS)
def test_derived_parameter_count_matches_the_published_one(cat, model_id):
    info = cat.models[model_id]
    derived = parameter_count(info.architecture)
    assert derived == pytest.approx(info.published_parameters, rel=0.01), \
        f"{model_id}: derived {derived:,} vs published {info.published_parameters:,}"


@pytest.mark.parametrize("model_id", REQUIRED_MODELS)
def test_bf16_weights_are_two_bytes_per_published_parameter(cat, model_id):
    info = cat.models[model_id]
    assert weight_bytes(info.architecture, "bf16") == pytest.approx(2 * info.published_parameters, rel=0.01)


def test_exact_published_counts_are_reproduced_exactly(cat):
    exact = [m for m in cat.models.values() if m.published_parameters % 10_000_000]
    assert len(exact) >= 10
    for info in exact:
        # bge-large's published total includes a 512-element position_ids buffer that holds no weights
        assert abs(parameter_count(info.architecture) - info.published_parameters) <= 512, info.id


def test_moe_active_parameters_match_the_model_cards(cat):
    from llm_platform.sizing.params import active_parameter_count
    mixtral = cat.models["mistralai/Mixtral-8x7B-Instruct-v0.1"].architecture
    deepseek = cat.models["deepseek-ai/DeepSeek-Coder-V2-Instruct"].architecture
    assert active_parameter_count(mixtral) == pytest.approx(12.9e9, rel=0.01)   # Mistral: 12.9B active
    assert active_parameter_count(deepseek) == pytest.approx(21e9, rel=0.03)    # DeepSeek: 21B active


def test_ggml_block_layouts_give_the_documented_bits_per_weight(cat):
    bpw = {t: 8 * size / block for t, (block, size) in cat.ggml_bytes_per_block.items()}
    assert bpw["Q4_0"] == 4.5 and bpw["Q8_0"] == 8.5 and bpw["Q4_K"] == 4.5
    assert bpw["Q5_K"] == 5.5 and bpw["Q6_K"] == 6.5625 and bpw["Q3_K"] == 3.4375 and bpw["Q2_K"] == 2.625


def test_gguf_mixes_reproduce_published_file_sizes(cat):
    import yaml
    sizes = yaml.safe_load(open(ROOT / "tests" / "data" / "measured_footprints.yaml"))["gguf_sizes_gb"]
    arch = cat.models[sizes.pop("model")].architecture
    for precision, gb in sizes.items():
        assert weight_bytes(arch, precision) / 1e9 == pytest.approx(gb, rel=0.01), precision


def test_every_data_file_states_when_it_was_checked():
    import yaml
    for name in ("models.yaml", "quantization.yaml"):
        assert yaml.safe_load(open(ROOT / "llm_platform" / "catalog" / name))["as_of"]
    text = (ROOT / "llm_platform" / "catalog" / "gpu_instances.yaml").read_text()
    assert "checked:" in text and "source:" in text
    for name in ("gpus.yaml", "overheads.yaml"):
        text = (ROOT / "llm_platform" / "catalog" / name).read_text()
        assert "Checked 2026" in text or "2026-11-25" in text
