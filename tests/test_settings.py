"""The config schema: every rule, each error naming its key path and saying what to do."""
import copy

import pytest

from llm_platform.settings import ConfigErrors, load_stack, parse, read_stack_file
from tests.conftest import ROOT, STACKS, prod_config

TGI_IMAGE = "registry.example.com/tgi@sha256:" + "0" * 64


def errors_of(raw, secret_keys=()):
    with pytest.raises(ConfigErrors) as exc:
        parse(raw, secret_keys)
    return {e.path: e.message for e in exc.value.errors}


def model(raw, **changes):
    raw["llm-platform:models"][0].update(changes)
    return raw


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stacks_are_valid(stack):
    config = load_stack(ROOT / f"Pulumi.{stack}.yaml")
    assert config.models


def test_minimal_config_gets_documented_defaults(minimal):
    c = parse(minimal)
    m = c.models[0]
    assert (c.environment, c.platform, c.region) == ("dev", "ec2", "us-east-1")
    assert c.network.cidr == "10.40.0.0/16" and c.network.egress == "none" and c.network.availability_zones == 2
    assert (m.runtime, m.precision, m.max_model_len, m.concurrency) == ("vllm", "bf16", 8192, 8)
    assert (m.max_num_batched_tokens, m.gpu_memory_utilization, m.trust_remote_code) == (8192, 0.90, False)
    assert c.monitoring.log_retention_days == 90 and c.api.max_tokens == 4096


def test_ollama_defaults_to_q4_k_m_and_f16_for_embedders(minimal):
    minimal["llm-platform:models"] = [
        {"name": "chat", "model": "Qwen/Qwen2.5-Coder-7B-Instruct", "runtime": "ollama"},
        {"name": "embed", "model": "nomic-ai/nomic-embed-text-v1.5", "runtime": "ollama"}]
    c = parse(minimal)
    assert [m.precision for m in c.models] == ["q4_k_m", "fp16"]
    assert c.models[1].max_model_len == 2048          # capped at the embedder's context window


def test_every_problem_is_reported_at_once():
    raw = {
        "llm-platform:environment": "prod",
        "llm-platform:network": {"cidr": "8.8.0.0/16", "availability_zones": 1, "allowed_client_cidrs": ["0.0.0.0/0"]},
        "llm-platform:api": {"clients": ["Bad Name"], "max_tokens": 0},
        "llm-platform:monitoring": {"log_retention_days": 42},
        "llm-platform:models": [
            {"name": "a", "model": "meta-llama/Llama-3.1-8B-Instruct", "runtime": "vllm", "precision": "q4_k_m"},
            {"name": "a", "model": "no/such-model", "max_model_len": -1},
        ],
        "llm-platform:colour": "blue",
    }
    errs = errors_of(raw)
    for path in ["llm-platform:network.cidr", "llm-platform:network.availability_zones",
                 "llm-platform:network.allowed_client_cidrs", "llm-platform:api.clients", "llm-platform:api.max_tokens",
                 "llm-platform:monitoring.log_retention_days", "llm-platform:models[0].precision",
                 "llm-platform:models[1].name", "llm-platform:models[1].model", "llm-platform:models[1].max_model_len",
                 "llm-platform:models[0].revision", "llm-platform:models[1].replicas", "llm-platform:colour"]:
        assert path in errs, f"{path} not reported; got {sorted(errs)}"
    assert len(errs) >= 13


@pytest.mark.parametrize("runtime,precision,hint", [
    ("vllm", "q4_k_m", "GGUF type, served only by ollama"),
    ("tgi", "q8_0", "GGUF type, served only by ollama"),
    ("ollama", "awq", "with runtime ollama use one of"),
    ("ollama", "fp8", "with runtime ollama use one of"),
    ("vllm", "int3", "unknown precision"),
])
def test_precision_must_suit_the_runtime(minimal, runtime, precision, hint):
    minimal["llm-platform:images"] = {**minimal["llm-platform:images"], "tgi": TGI_IMAGE}
    errs = errors_of(model(minimal, runtime=runtime, precision=precision))
    assert hint in errs["llm-platform:models[0].precision"]


@pytest.mark.parametrize("runtime,precision", [("vllm", "awq"), ("vllm", "gptq"), ("tgi", "fp8"), ("ollama", "q6_k"),
                                                ("ollama", "q8_0"), ("vllm", "fp16")])
def test_valid_precisions_pass(minimal, runtime, precision):
    minimal["llm-platform:images"] = {**minimal["llm-platform:images"], "tgi": TGI_IMAGE}
    assert parse(model(minimal, runtime=runtime, precision=precision)).models[0].precision == precision


def test_kv_cache_dtype_must_suit_the_runtime(minimal):
    assert ("not available with vllm"
            in errors_of(model(minimal, kv_cache_dtype="q8_0"))["llm-platform:models[0].kv_cache_dtype"])
    assert parse(model(minimal, kv_cache_dtype="fp8")).models[0].kv_cache_dtype == "fp8"


def test_max_model_len_within_the_context_window(minimal):
    msg = errors_of(model(minimal, max_model_len=200000))["llm-platform:models[0].max_model_len"]
    assert "131072" in msg and "at most" in msg
    assert parse(model(minimal, max_model_len=131072)).models[0].max_model_len == 131072


def test_unknown_model_needs_an_architecture_block(minimal):
    errs = errors_of(model(minimal, model="acme/secret-coder-9b"))
    assert "architecture" in errs["llm-platform:models[0].model"]
    arch = {"num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 65536}
    c = parse(model(minimal, model="acme/secret-coder-9b", architecture=arch, max_model_len=65536))
    assert c.models[0].architecture.kv_heads == 8


def test_architecture_block_errors_name_the_field(minimal):
    arch = {"num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
            "num_key_value_heads": 6, "vocab_size": 128256, "max_position_embeddings": 65536, "n_layers": 3}
    errs = errors_of(model(copy.deepcopy(minimal), model="acme/x", architecture=arch))
    assert "unknown key" in errs["llm-platform:models[0].architecture.n_layers"]
    del arch["n_layers"]
    errs = errors_of(model(minimal, model="acme/x", architecture=arch))
    assert "multiple of num_key_value_heads" in errs["llm-platform:models[0].architecture"]


@pytest.mark.parametrize("name", ["Llama", "llama_8b", "-llama", "llama-", "a" * 64, ""])
def test_model_names_must_be_dns_labels(minimal, name):
    assert "llm-platform:models[0].name" in errors_of(model(minimal, name=name))


def test_model_names_are_unique(minimal):
    minimal["llm-platform:models"].append(copy.deepcopy(minimal["llm-platform:models"][0]))
    assert "already named" in errors_of(minimal)["llm-platform:models[1].name"]


@pytest.mark.parametrize("cidrs,fragment", [
    (["10.40.1.0/24"], "overlaps the VPC CIDR"),
    (["0.0.0.0/0"], "whole internet"),
    (["::/0"], "whole internet"),
    (["10.0.0.300/24"], "not a CIDR"),
    (["10.10.0.1/16"], "not a CIDR"),
])
def test_client_cidrs_are_valid_and_outside_the_vpc(minimal, cidrs, fragment):
    minimal["llm-platform:network"]["allowed_client_cidrs"] = cidrs
    assert fragment in errors_of(minimal)["llm-platform:network.allowed_client_cidrs"]


def test_monitoring_cidrs_are_checked_too(minimal):
    minimal["llm-platform:network"]["monitoring_cidrs"] = ["10.40.0.0/20"]
    assert "overlaps" in errors_of(minimal)["llm-platform:network.monitoring_cidrs"]


@pytest.mark.parametrize("cidr", ["8.8.0.0/16", "10.0.0.0/8", "10.1.0.0/28", "fd00::/48"])
def test_vpc_cidr_is_private_and_sized(minimal, cidr):
    minimal["llm-platform:network"]["cidr"] = cidr
    assert "llm-platform:network.cidr" in errors_of(minimal)


def test_prod_needs_two_replicas_and_two_azs():
    errs = errors_of(prod_config(replicas=1))
    assert "set replicas to 2" in errs["llm-platform:models[0].replicas"]
    raw = prod_config(replicas=None, autoscaling={"min": 1, "max": 3})
    del raw["llm-platform:models"][0]["replicas"]
    assert "autoscaling.min" in errors_of(raw)["llm-platform:models[0].autoscaling.min"]
    raw = prod_config()
    raw["llm-platform:network"]["availability_zones"] = ["us-east-1a"]
    assert "at least 2 availability zones" in errors_of(raw)["llm-platform:network.availability_zones"]
    parse(prod_config())


def test_replicas_and_autoscaling_are_exclusive(minimal):
    errs = errors_of(model(minimal, replicas=2, autoscaling={"min": 2, "max": 4}))
    assert "Only one of replicas and autoscaling" in errs["llm-platform:models[0].autoscaling"]
    errs = errors_of(model(minimal, autoscaling={"min": 4, "max": 2}))
    assert "below min" in errs["llm-platform:models[0].autoscaling.max"]


@pytest.mark.parametrize("key,value,fragment", [
    ("revision", "main", "moving reference"),
    ("revision", "v1.0", "not a pinned revision"),
    ("provenance", {"source": "x", "license": "y", "approved_by": "z", "review_status": "pending"}, "only approved"),
    ("checksums", {"manifest": "SHA256SUMS", "sha256": "abc"}, "64 lowercase hex"),
])
def test_prod_integrity_fields(key, value, fragment):
    errs = errors_of(prod_config(**{key: value}))
    assert any(fragment in m for p, m in errs.items() if p.startswith(f"llm-platform:models[0].{key}")), errs


def test_dev_may_omit_integrity_fields_but_not_pin_floating_refs(minimal):
    parse(minimal)
    assert "moving reference" in errors_of(model(minimal, revision="latest"))["llm-platform:models[0].revision"]


def test_trust_remote_code_only_where_the_registry_allows(minimal):
    assert "loads without remote code" in errors_of(model(minimal, trust_remote_code=True))[
        "llm-platform:models[0].trust_remote_code"]
    parse(model(minimal, model="nomic-ai/nomic-embed-text-v1.5", trust_remote_code=True, max_model_len=2048))


def test_embedders_prefill_whole_inputs(minimal):
    errs = errors_of(model(minimal, model="BAAI/bge-large-en-v1.5", max_model_len=512, max_num_batched_tokens=256))
    assert "raise it to at least 512" in errs["llm-platform:models[0].max_num_batched_tokens"]


def test_gpu_memory_utilization_capped_at_the_guides_095(minimal):
    assert "llm-platform:models[0].gpu_memory_utilization" in errors_of(model(minimal, gpu_memory_utilization=0.98))


def test_unknown_keys_are_refused_with_the_known_ones(minimal):
    model(minimal, max_model_length=4096)
    msg = errors_of(minimal)["llm-platform:models[0].max_model_length"]
    assert "unknown key" in msg and "max_model_len" in msg


def test_strict_types_refuse_strings_for_numbers(minimal):
    assert "llm-platform:models[0].concurrency" in errors_of(model(minimal, concurrency="8"))


def test_instance_type_must_be_in_the_catalog(minimal):
    assert ("plan.py --catalog"
            in errors_of(model(minimal, instance_type="p9.huge"))["llm-platform:models[0].instance_type"])


def test_pricing_overrides_name_catalog_types(minimal):
    minimal["llm-platform:pricing"] = {"hourly_usd": {"g5.xlarge": 0.7, "z1.nano": 1.0}}
    assert "z1.nano" in errors_of(minimal)["llm-platform:pricing.hourly_usd"]


def test_plaintext_hf_token_is_an_error(minimal):
    minimal["llm-platform:hfToken"] = "hf_abcdefghijklmnopqrstuvwxyz0123456789"
    errs = errors_of(minimal)
    assert "pulumi config set --secret hfToken" in errs["llm-platform:hfToken"]


def test_secure_hf_token_is_accepted(minimal):
    minimal["llm-platform:hfToken"] = {"secure": "AAABAJv2lq0Zb1nMx"}
    assert parse(minimal).hf_token is True
    minimal["llm-platform:hfToken"] = "decrypted-at-runtime"
    assert parse(minimal, secret_keys=["llm-platform:hfToken"]).hf_token is True


@pytest.mark.parametrize("value,what", [
    ("hf_abcdefghijklmnopqrstuvwxyz0123456789", "Hugging Face token"),
    ("AKIAABCDEFGHIJKLMNOP", "AWS access key"),
    ("-----BEGIN RSA PRIVATE KEY-----", "private key"),
    ("api_key=sk-live-0123456789abcdef", "API key"),
])
def test_secret_looking_literals_anywhere_are_errors(minimal, value, what):
    minimal["llm-platform:api"]["domain"] = value
    errs = errors_of(minimal)
    assert what in errs["llm-platform:api.domain"]


def test_other_namespaces_are_left_to_their_providers(minimal):
    minimal["aws:defaultTags"] = {"tags": {"team": "ml"}}
    minimal["aws:region"] = "eu-west-1"
    assert parse(minimal).region == "eu-west-1"


def test_unreadable_stack_files_are_config_errors(tmp_path):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  llm-platform:models: [\n")
    with pytest.raises(ConfigErrors) as exc:
        read_stack_file(bad)
    assert "not valid YAML at line" in exc.value.errors[0].message
    with pytest.raises(ConfigErrors):
        read_stack_file(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigErrors):
        read_stack_file(tmp_path / "list.yaml")


def test_tgi_needs_an_image_of_your_own_since_upstream_archived_it(minimal):
    msg = errors_of(model(minimal, runtime="tgi"))["llm-platform:models[0].runtime"]
    assert "archived" in msg and "llm-platform:images.tgi" in msg
    minimal["llm-platform:images"] = {**minimal["llm-platform:images"], "tgi": TGI_IMAGE}
    assert parse(minimal).images.tgi == TGI_IMAGE


@pytest.mark.parametrize("ref", ["vllm/vllm-openai:latest", "vllm/vllm-openai@sha256:abc", "VLLM@sha256:" + "0" * 64])
def test_image_overrides_are_pinned_by_digest(minimal, ref):
    minimal["llm-platform:images"] = {"vllm": ref}
    assert "llm-platform:images.vllm" in errors_of(minimal)


def test_docker_hub_credential_must_be_a_pull_through_cache_secret(minimal):
    minimal["llm-platform:images"] = {
        "docker_hub_credential_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hub"}
    assert "llm-platform:images.docker_hub_credential_arn" in errors_of(minimal)


def test_load_balanced_platforms_need_two_azs(minimal):
    minimal["llm-platform:network"]["availability_zones"] = 1
    assert "at least 2 availability zones" in errors_of(minimal)["llm-platform:network.availability_zones"]
    minimal["llm-platform:platform"] = "docker"
    minimal["llm-platform:local"] = minimal.get("llm-platform:local", {})
    errs = {}
    try:
        parse(minimal)
    except ConfigErrors as exc:
        errs = {e.path: e.message for e in exc.errors}
    assert "llm-platform:network.availability_zones" not in errs


def test_docker_hub_token_must_be_a_secret(minimal):
    minimal["llm-platform:dockerHubToken"] = "dckr_pat_plaintext_value_123"
    assert "pulumi config set --secret dockerHubToken" in errors_of(minimal)["llm-platform:dockerHubToken"]
    minimal["llm-platform:dockerHubToken"] = {"secure": "v1:abc"}
    assert parse(minimal).docker_hub_token is True


def test_eks_needs_nat_egress_for_its_add_on_images(minimal):
    minimal["llm-platform:platform"] = "eks"
    minimal["llm-platform:network"]["egress"] = "none"
    assert "set egress to nat" in errors_of(minimal)["llm-platform:network.egress"]
    minimal["llm-platform:network"]["egress"] = "nat"
    assert parse(minimal).network.egress == "nat"


def test_eks_api_access_is_from_listed_networks_and_roles_only(minimal):
    minimal["llm-platform:platform"] = "eks"
    minimal["llm-platform:network"]["egress"] = "nat"
    minimal["llm-platform:eks"] = {"api_access_cidrs": ["0.0.0.0/0"], "admin_role_arns": ["not-an-arn"]}
    errs = errors_of(minimal)
    assert "whole internet" in errs["llm-platform:eks.api_access_cidrs"]
    assert "IAM role ARNs" in errs["llm-platform:eks.admin_role_arns"]


def test_project_config_defaults_match_the_schema():
    import yaml

    from llm_platform.settings.schema import StackConfig
    declared = yaml.safe_load(open(ROOT / "Pulumi.yaml"))["config"]
    for key, spec in declared.items():
        assert spec["default"] == StackConfig.model_fields[key].default, key
