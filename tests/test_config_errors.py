"""Config errors a user can act on: the model named, did-you-mean, duplicated keys, alarms in prod, and every
problem of a stack in one pass (the Docker Hub credential included)."""
import copy
import json

import pytest

import plan
from llm_platform.settings import ConfigErrors, parse, read_stack_file
from tests.conftest import MINIMAL, prod_config


def errors_of(raw):
    with pytest.raises(ConfigErrors) as exc:
        parse(raw)
    return exc.value.errors


def three_models():
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:models"] = [{"name": "qwen-7b", "model": "Qwen/Qwen2.5-Coder-7B-Instruct"},
                                  {"name": "nomic", "model": "nomic-ai/nomic-embed-text-v1.5",
                                   "trust_remote_code": True},
                                  {"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "revision": "main"}]
    return raw


def test_every_message_about_a_model_names_it():
    errs = errors_of(three_models())
    [e] = errs
    assert e.path == "llm-platform:models[2].revision" and e.model == "llama-8b"
    assert e.where == "llm-platform:models[2] (llama-8b).revision"
    assert str(ConfigErrors(errs)).splitlines()[1].startswith("  llm-platform:models[2] (llama-8b).revision: ")
    assert e.as_dict() == {"path": "llm-platform:models[2].revision", "message": e.message, "model": "llama-8b"}


def test_a_misspelt_key_gets_a_did_you_mean_and_the_known_keys_once():
    raw = three_models()
    raw["llm-platform:models"][2]["revision"] = "0e9e39f249a16976918f6564b8830bc894c89659"
    raw["llm-platform:models"][0]["max_model_length"] = 4096
    raw["llm-platform:models"][1]["concurency"] = 4
    errs = {e.path: e for e in errors_of(raw)}
    first, second = errs["llm-platform:models[0].max_model_length"], errs["llm-platform:models[1].concurency"]
    assert "did you mean 'max_model_len'?" in first.message and first.model == "qwen-7b"
    assert "did you mean 'concurrency'?" in second.message and second.model == "nomic"
    listed = [e for e in errs.values() if "known keys:" in e.message]
    assert len(listed) == 1 and "max_num_batched_tokens" in listed[0].message


def test_a_key_with_no_close_match_says_remove_it():
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:frobnicate"] = 1
    [e] = errors_of(raw)
    assert "remove it or fix its spelling" in e.message and "known keys:" in e.message
    assert "did you mean" not in e.message


def test_a_key_written_twice_in_a_stack_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "Pulumi.dup.yaml"
    path.write_text("config:\n  llm-platform:environment: dev\n  llm-platform:models:\n"
                    "    - name: llama-8b\n      model: meta-llama/Llama-3.1-8B-Instruct\n"
                    "      precision: fp8\n      precision: bf16\n  llm-platform:environment: prod\n")
    with pytest.raises(ConfigErrors) as exc:
        read_stack_file(path)
    errs = {e.path: e for e in exc.value.errors}
    assert set(errs) == {"llm-platform:environment", "llm-platform:models[0].precision"}
    assert "line 7" in errs["llm-platform:models[0].precision"].message
    assert errs["llm-platform:models[0].precision"].where == "llm-platform:models[0] (llama-8b).precision"
    env = errs["llm-platform:environment"].message
    assert "line 8" in env and "written twice" in env


def test_the_same_key_in_different_mappings_is_not_a_duplicate(tmp_path):
    path = tmp_path / "Pulumi.ok.yaml"
    path.write_text("config:\n  llm-platform:models:\n    - {name: a, model: x}\n    - {name: b, model: y}\n")
    assert [m["name"] for m in read_stack_file(path)["llm-platform:models"]] == ["a", "b"]


def test_prod_without_an_alarm_recipient_is_an_error():
    raw = prod_config()
    del raw["llm-platform:monitoring"]
    [e] = errors_of(raw)
    assert e.path == "llm-platform:monitoring.alarm_email" and "nobody" in e.message
    dev = copy.deepcopy(MINIMAL)
    assert parse(dev).monitoring.alarm_email is None                     # dev may run without one


def test_all_problems_in_one_pass_the_docker_hub_credential_included(capsys, tmp_path):
    raw = copy.deepcopy(MINIMAL)
    del raw["llm-platform:images"]
    raw["llm-platform:models"][0]["max_model_length"] = 4096
    path = tmp_path / "Pulumi.two.yaml"
    import yaml
    path.write_text(yaml.safe_dump({"config": raw}))
    assert plan.main(["--config", str(path), "--json"]) == 2
    errs = {e["path"]: e for e in json.loads(capsys.readouterr().out)["errors"]}
    assert set(errs) == {"llm-platform:models[0].max_model_length", "llm-platform:images.docker_hub_credential_arn"}
    assert "the vllm image comes from Docker Hub" in errs["llm-platform:images.docker_hub_credential_arn"]["message"]
    assert errs["llm-platform:models[0].max_model_length"]["model"] == "llama-8b"


@pytest.mark.parametrize("images", [{"create_cache_rules": False},
                                    {"vllm": "registry.example.com/vllm@sha256:" + "1" * 64}])
def test_no_credential_is_needed_when_nothing_comes_from_docker_hub_through_this_stack(images):
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:images"] = images
    assert parse(raw).models[0].name == "llama-8b"


def test_the_docker_platform_pulls_directly_and_needs_no_cache_credential():
    raw = copy.deepcopy(MINIMAL)
    del raw["llm-platform:images"]
    raw["llm-platform:platform"] = "docker"
    raw["llm-platform:local"] = {"gpu": "L40S"}
    assert parse(raw).platform == "docker"


def test_a_duplicated_key_does_not_hide_the_other_problems(capsys, tmp_path):
    path = tmp_path / "Pulumi.both.yaml"
    path.write_text("config:\n  llm-platform:environment: dev\n  llm-platform:environment: dev\n"
                    "  llm-platform:network: {allowed_client_cidrs: [10.10.0.0/16]}\n"
                    "  llm-platform:api: {clients: [ide]}\n  llm-platform:models:\n"
                    "    - {name: llama-8b, model: meta-llama/Llama-3.1-8B-Instruct, max_model_length: 4096}\n")
    assert plan.main(["--config", str(path), "--json", "--sizing-only"]) == 2
    paths = {e["path"] for e in json.loads(capsys.readouterr().out)["errors"]}
    assert {"llm-platform:environment", "llm-platform:models[0].max_model_length",
            "llm-platform:images.docker_hub_credential_arn"} <= paths
