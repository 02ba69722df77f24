"""Offline analysis of stack exports: every hand-made misconfigured export yields exactly its violation,
the clean ones none; `python -m policies.analyze` exits 0/1/2 and never prints a traceback."""
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from llm_platform.policies import analyze
from llm_platform.policies.offline import evaluate_export
from llm_platform.policies.rules import ALL
from tests.data.exports import make_exports

EXPORTS = Path(__file__).parent / "data" / "exports"
EXPECTED = json.loads((EXPORTS / "expected.json").read_text())
# the pack config a team runs with: its reviewed models (without one, model-allow-list says so, as an advisory)
CONFIG_FILE = EXPORTS / "policy-config.json"
CONFIG = json.loads(CONFIG_FILE.read_text())


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = analyze.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_fixtures_are_what_the_generator_writes():
    built = make_exports.build()
    assert set(built) == set(EXPECTED)
    for name, doc in built.items():
        assert json.loads((EXPORTS / f"{name}.json").read_text()) == doc, f"{name}.json is stale: rerun make_exports"
    assert len([n for n in EXPECTED if not n.startswith("clean-")]) >= 25


def test_every_mandatory_rule_has_a_misconfigured_export():
    covered = {policy for v in EXPECTED.values() for policy, _ in v}
    missing = [r.name for r in ALL if r.levels["prod"] == "mandatory" and r.name not in covered]
    assert not missing


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_export_yields_exactly_the_expected_violation(name):
    doc = json.loads((EXPORTS / f"{name}.json").read_text())
    violations, notes = evaluate_export(doc, config=CONFIG)
    got = sorted([v["policy"], v["resource"]] for v in violations if v["enforcement"] == "mandatory")
    assert got == sorted(EXPECTED[name])
    assert not [v for v in violations if v["enforcement"] != "mandatory"], "no advisory noise either"
    assert not notes, "every value of a stored stack is known"


@pytest.mark.parametrize("name", ["clean-ec2", "clean-ecs", "clean-k8s", "clean-sagemaker"])
def test_clean_exports_exit_0(name):
    rc, out, _ = run_cli(str(EXPORTS / f"{name}.json"), "--json", "--config", str(CONFIG_FILE))
    assert rc == 0
    assert json.loads(out)["violations"] == []
    rc, out, _ = run_cli(str(EXPORTS / f"{name}.json"), "--json")      # no allow-list configured: one advisory
    assert rc == 0
    assert [(v["policy"], v["enforcement"]) for v in json.loads(out)["violations"]] == [("model-allow-list",
                                                                                          "advisory")]


def test_misconfigured_export_exits_1_with_the_contract_fields():
    rc, out, _ = run_cli(str(EXPORTS / "lb-internet-facing.json"), "--json", "--config", str(CONFIG_FILE))
    assert rc == 1
    (v,) = json.loads(out)["violations"]
    assert {"policy", "enforcement", "resource", "message"} <= set(v)
    assert (v["policy"], v["enforcement"], v["resource"]) == ("internal-load-balancers", "mandatory", "api")


def test_text_report_names_policy_and_resource():
    rc, out, _ = run_cli(str(EXPORTS / "imdsv1-allowed.json"))
    assert rc == 1 and "ec2-imdsv2-required" in out and "llm-8b" in out


def test_config_makes_the_dev_level_advisory():
    rc, out, _ = run_cli(str(EXPORTS / "no-flow-logs.json"), "--config", "policies/config/dev.json", "--json")
    assert rc == 0
    assert [(v["policy"], v["enforcement"]) for v in json.loads(out)["violations"]
            if v["policy"] != "model-allow-list"] == [("vpc-flow-logs", "advisory")]


def test_environment_flag_and_prod_only_rules():
    rc, _, _ = run_cli(str(EXPORTS / "ollama-in-prod.json"), "--environment", "dev")
    assert rc == 0          # Ollama is the guide's dev runtime
    rc, _, _ = run_cli(str(EXPORTS / "ollama-in-prod.json"))
    assert rc == 1          # no config: judged as prod


def test_config_with_rule_properties(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model-allow-list": {"allowedModels": ["mistralai/*", "meta-llama/*"]}}))
    rc, _, _ = run_cli(str(EXPORTS / "model-not-allowed.json"), "--config", str(cfg))
    assert rc == 0
    cfg.write_text(json.dumps({"all": "advisory"}))
    rc, _, _ = run_cli(str(EXPORTS / "lb-internet-facing.json"), "--config", str(cfg))
    assert rc == 0


@pytest.mark.parametrize("content,needle", [
    (None, "no such file"),
    ("", "empty file"),
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"version": 9, "deployment": {"resources": []}}', "unsupported stack export version"),
    ('{"version": 3}', "no `deployment`"),
    ('{"version": 3, "deployment": {"resources": {"a": 1}}}', "not a list"),
    ('{"version": 3, "deployment": {"resources": [{"urn": "x"}]}}', "has no `type`"),
])
def test_unreadable_files_exit_2_without_traceback(tmp_path, content, needle):
    f = tmp_path / "export.json"
    if content is not None:
        f.write_text(content)
    rc, out, err = run_cli(str(f))
    assert rc == 2
    assert needle in err and "Traceback" not in err + out


def test_directory_and_binary_files_exit_2(tmp_path):
    assert run_cli(str(tmp_path))[0] == 2
    b = tmp_path / "bin.json"
    b.write_bytes(b"\xff\xfe\x00\x01")
    rc, out, err = run_cli(str(b))
    assert rc == 2 and "Traceback" not in err


def test_bad_policy_config_exits_2(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"no-such-policy": "mandatory"}))
    rc, _, err = run_cli(str(EXPORTS / "clean-ec2.json"), "--config", str(cfg))
    assert rc == 2 and "no-such-policy" in err
    cfg.write_text(json.dumps({"vpc-flow-logs": "sometimes"}))
    assert run_cli(str(EXPORTS / "clean-ec2.json"), "--config", str(cfg))[0] == 2


def test_empty_stack_and_secret_envelopes():
    assert evaluate_export({"version": 3, "deployment": {"resources": None}}) == ([], [])
    doc = json.loads((EXPORTS / "clean-ec2.json").read_text())
    versions = [r for r in doc["deployment"]["resources"] if r["type"].endswith("SecretVersion")]
    assert versions and "ciphertext" in versions[0]["inputs"]["secretString"]


def test_user_data_as_an_encrypted_secret_is_reported():
    doc = json.loads((EXPORTS / "clean-ec2.json").read_text())
    for r in doc["deployment"]["resources"]:
        if r["type"] == "aws:ec2/launchTemplate:LaunchTemplate":
            r["inputs"]["userData"] = r["outputs"]["userData"] = {
                "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:abc"}
    violations, _ = evaluate_export(doc)
    assert [v["policy"] for v in violations if v["enforcement"] == "mandatory"] == ["no-secret-literals"]


def test_show_secrets_plaintext_is_read():
    doc = json.loads((EXPORTS / "clean-ecs.json").read_text())
    for r in doc["deployment"]["resources"]:
        if r["type"] == "aws:ecs/taskDefinition:TaskDefinition":
            defs = json.loads(r["inputs"]["containerDefinitions"])
            defs[0]["environment"].append({"name": "HF_TOKEN", "value": "hf_" + "a1B2" * 9})
            env = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                   "plaintext": json.dumps(json.dumps(defs))}
            r["inputs"]["containerDefinitions"] = r["outputs"]["containerDefinitions"] = env
    violations, _ = evaluate_export(doc, config=CONFIG)
    assert [v["policy"] for v in violations] == ["no-secret-literals"]


def test_module_runs_as_a_script():
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "policies.analyze", str(EXPORTS / "ssh-port-open.json"), "--json"],
                       capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=60)
    assert p.returncode == 1 and json.loads(p.stdout)["violations"][0]["policy"] == "no-remote-admin-ports"
