"""plan.py end to end, per the contract in the architecture doc."""
import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

import plan
from tests.conftest import MINIMAL, ROOT, STACKS

DEPLOYMENT_KEYS = {"name", "model", "runtime", "precision", "instance_type", "gpu", "instances",
                   "tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "concurrency",
                   "memory", "hourly_cost_usd", "monthly_cost_usd"}
MEMORY_KEYS = {"weights_gib", "kv_cache_gib", "overhead_gib", "per_gpu_required_gib", "per_gpu_usable_gib"}


PLAN_SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())


def validate(body: dict) -> None:
    """The contract, as the JSON Schema shipped in schemas/ states it (other tools validate against that file)."""
    jsonschema.Draft202012Validator.check_schema(PLAN_SCHEMA)
    jsonschema.Draft202012Validator(PLAN_SCHEMA).validate(body)


def run(capsys, *argv):
    code = plan.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_stack(tmp_path, raw, name="Pulumi.test.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"config": raw}))
    return str(path)


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_plans_cleanly_per_the_contract(capsys, stack):
    code, out, _ = run(capsys, "--stack", stack, "--json")
    body = json.loads(out)
    assert code == 0
    validate(body)
    assert {"stack", "environment", "platform", "region", "monthly_cost_usd", "deployments", "resources",
            "violations"} <= body.keys()
    assert body["stack"] == stack and body["deployments"] and body["resources"]
    for d in body["deployments"]:
        assert DEPLOYMENT_KEYS <= d.keys() and MEMORY_KEYS <= d["memory"].keys()
        assert {"name", "count", "memory_gib"} <= d["gpu"].keys()
        m = d["memory"]
        assert m["per_gpu_required_gib"] <= m["per_gpu_usable_gib"]
        assert m["per_gpu_usable_gib"] == pytest.approx(d["gpu"]["memory_gib"] * d["gpu_memory_utilization"], abs=0.02)
        assert d["monthly_cost_usd"] == pytest.approx(d["hourly_cost_usd"] * d["instances"] * 730, rel=1e-3)
    assert body["monthly_cost_usd"] == pytest.approx(sum(d["monthly_cost_usd"] for d in body["deployments"]), abs=0.05)
    for r in body["resources"]:
        assert {"type", "name", "parent", "inputs"} <= r.keys()


def test_default_stack_is_dev_and_text_report_reads_like_a_pr_comment(capsys):
    code, out, _ = run(capsys)
    assert code == 0
    first = out.splitlines()[0]
    assert "0 mandatory" in first and "advisory" in first and "$767.96/month" in first
    assert "## llm-platform plan: stack `dev`" in out
    assert "| **qwen-coder-7b**" in out and "<summary>Resources:" in out
    assert "Ec2Platform llm-dev" in out and "  ModelDeployment llm-dev-qwen-coder-7b" in out


def test_prod_plan_is_air_gapped_vllm_with_two_replicas_each(capsys):
    body = json.loads(run(capsys, "--stack", "prod", "--json")[1])
    assert body["environment"] == "prod"
    assert {d["runtime"] for d in body["deployments"]} == {"vllm"}
    assert all(d["instances"] >= 2 for d in body["deployments"])
    names = {d["name"] for d in body["deployments"]}
    assert names == {"llama-70b", "qwen-coder-32b", "llama-8b", "nomic-embed"}


def test_config_flag_plans_any_stack_file(capsys, tmp_path):
    code, out, _ = run(capsys, "--config", write_stack(tmp_path, MINIMAL), "--json")
    body = json.loads(out)
    assert code == 0 and body["stack"] == "test" and body["deployments"][0]["name"] == "llama-8b"


def test_broken_config_exits_2_with_every_error_and_its_key_path(capsys, tmp_path):
    raw = {"llm-platform:environment": "prod", "llm-platform:models": [
        {"name": "Not A Dns Name", "model": "no-such-org/no-such-model", "max_model_len": -5}]}
    code, out, _ = run(capsys, "--config", write_stack(tmp_path, raw), "--json")
    body = json.loads(out)
    assert code == 2
    validate(body)
    paths = {e["path"] for e in body["errors"]}
    assert {"llm-platform:models[0].name", "llm-platform:models[0].model", "llm-platform:models[0].max_model_len",
            "llm-platform:network", "llm-platform:api"} <= paths
    assert all(e["message"] for e in body["errors"])


def test_unplannable_model_exits_2_with_advice(capsys, tmp_path):
    raw = {**MINIMAL, "llm-platform:models": [
        {"name": "huge", "model": "meta-llama/Llama-3.1-405B-Instruct", "instance_type": "g5.48xlarge"}]}
    code, out, err = run(capsys, "--config", write_stack(tmp_path, raw))
    assert code == 2 and out == ""
    assert "llm-platform:models[0] (huge).instance_type" in err and "what would fit" in err


def test_unknown_stack_and_bad_yaml_exit_2(capsys, tmp_path):
    code, out, _ = run(capsys, "--stack", "nope", "--json")
    assert code == 2 and "shipped stacks are" in json.loads(out)["errors"][0]["message"]
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: [unclosed\n")
    code, out, _ = run(capsys, "--config", str(bad), "--json")
    assert code == 2 and "not valid YAML" in json.loads(out)["errors"][0]["message"]


def test_catalog_listing(capsys):
    code, out, _ = run(capsys, "--catalog", "--json")
    body = json.loads(out)
    assert code == 0 and body["prices_as_of"]
    validate(body)
    types = {i["instance_type"]: i for i in body["instances"]}
    assert types["p5.4xlarge"]["gpu"] == {"name": "H100", "count": 1, "memory_gib": 79.19}
    assert {"instance_type", "gpu", "vcpus", "memory_gib", "hourly_cost_usd"} <= types["g5.xlarge"].keys()
    code, out, _ = run(capsys, "--catalog")
    assert "| p5.48xlarge | 8 x H100 |" in out


def test_secure_config_values_reach_the_program_as_secrets_and_are_redacted(capsys, tmp_path):
    raw = {**MINIMAL, "llm-platform:hfToken": {"secure": "v1:AAAAencryptedAAAA"}}
    code, out, _ = run(capsys, "--config", write_stack(tmp_path, raw), "--json")
    assert code == 0 and "v1:AAAAencrypted" not in out


def test_no_traceback_for_user_mistakes_in_a_real_process(tmp_path):
    path = write_stack(tmp_path, {"llm-platform:models": "not a list"})
    proc = subprocess.run([sys.executable, str(ROOT / "plan.py"), "--config", path, "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert any(e["path"] == "llm-platform:models" for e in json.loads(proc.stdout)["errors"])


def test_docker_without_a_workstation_gpu_exits_2_naming_the_key(capsys, tmp_path):
    raw = {**MINIMAL, "llm-platform:platform": "docker"}
    code, out, _ = run(capsys, "--config", write_stack(tmp_path, raw), "--json")
    err = json.loads(out)["errors"][0]
    assert code == 2 and err["path"] == "llm-platform:local" and "gpu_count" in err["message"]
