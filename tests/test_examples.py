"""plan.py --program: any Pulumi Python program directory under the recording mocks, and the shipped example
(examples/private-gpu-model), a program of its own that composes the installed components."""
import json
import subprocess
import sys
import textwrap

import pytest

import plan
from llm_platform import catalog
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "private-gpu-model"


def run(capsys, *argv):
    code = plan.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def program(tmp_path, body: str, name: str = "foreign") -> str:
    (tmp_path / "Pulumi.yaml").write_text(f"name: {name}\nruntime: python\n")
    (tmp_path / "__main__.py").write_text(textwrap.dedent(body))
    return str(tmp_path)


def test_the_example_plans_a_gpu_fleet_with_no_mandatory_violation(capsys):
    code, out, _ = run(capsys, "--program", str(EXAMPLE), "--json")
    report = json.loads(out)
    assert code == 0, [v for v in report["violations"] if v["enforcement"] == "mandatory"]
    assert report["project"] == "private-gpu-model" and report["environment"] == "prod"
    assert {"endpoint", "instance_type", "model_bucket", "dashboard_url"} <= set(report["exports"])
    assert not [v for v in report["violations"] if v["enforcement"] == "mandatory"]
    resources = report["resources"]
    lts = [r for r in resources if r["type"] == "aws:ec2/launchTemplate:LaunchTemplate"]
    asgs = [r for r in resources if r["type"] == "aws:autoscaling/group:Group"]
    assert len(asgs) == 1
    deployment = next(r for r in resources if r["type"] == "llm-platform:index:ModelDeployment")
    plan = deployment["inputs"]["plan"]
    # one launch template per type the group may launch: the planner's choice and its checked fallbacks
    launchable = [plan["instance_type"], *(f["instance_type"] for f in plan["fallbacks"])]
    assert sorted(lt["inputs"]["instanceType"] for lt in lts) == sorted(launchable)
    instance = catalog.load().instances[plan["instance_type"]]
    assert instance.gpu_count >= 1                              # a GPU instance type, chosen by the planner
    assert asgs[0]["inputs"]["minSize"] >= 2                    # prod: replicas in two zones (in capacity units)
    kinds = {r["type"] for r in resources}
    assert {"llm-platform:network:PrivateNetwork", "llm-platform:security:PlatformKeys",
            "llm-platform:monitoring:Monitoring", "aws:cloudwatch/metricAlarm:MetricAlarm"} <= kinds
    # nothing of our stack program: no platform component, no llm-platform stack config read
    assert not any(t.endswith("Platform") and t.startswith("llm-platform:index:") for t in kinds)


def test_the_example_installs_the_package_not_a_path_hack():
    main = (EXAMPLE / "__main__.py").read_text()
    assert "sys.path" not in main and "from llm_platform.components import" in main
    assert (EXAMPLE / "requirements.txt").read_text().strip().splitlines()[-1] == "../.."
    assert "llm-platform:" not in main                          # no key of our stack config


def test_text_report_shows_the_tree_and_the_verdicts(capsys):
    code, out, _ = run(capsys, "--program", str(EXAMPLE))
    assert code == 0
    assert "ModelDeployment dev-llama-8b  (llm-platform:index:ModelDeployment)" in out
    assert "    LaunchTemplate dev-llama-8b-fleet-lt" in out and "### Policy violations" in out


def test_a_mandatory_violation_exits_1(capsys, tmp_path):
    d = program(tmp_path, """
        import pulumi_aws as aws
        aws.s3.Bucket("public", acl="public-read")
        aws.ec2.SecurityGroup("ssh", ingress=[{"protocol": "tcp", "from_port": 22, "to_port": 22,
                                                "cidr_blocks": ["0.0.0.0/0"]}])
    """)
    code, out, _ = run(capsys, "--program", d, "--json")
    report = json.loads(out)
    assert code == 1 and any(v["enforcement"] == "mandatory" for v in report["violations"])
    assert {r["name"] for r in report["resources"]} == {"public", "ssh"}


def test_config_file_feeds_the_program_and_names_the_environment(capsys, tmp_path):
    (tmp_path / "p").mkdir()
    d = program(tmp_path / "p", """
        import pulumi
        import pulumi_aws as aws
        aws.sns.Topic("alerts", name=pulumi.Config().require("topic"))
    """)
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text("config:\n  foreign:topic: ops-alerts\n  foreign:environment: dev\n")
    code, out, _ = run(capsys, "--program", d, "--config", str(stack_file), "--json")
    report = json.loads(out)
    assert report["stack"] == "staging" and report["environment"] == "dev"
    assert report["resources"][0]["inputs"]["name"] == "ops-alerts"


@pytest.mark.parametrize("body,expected", [
    ('raise ValueError("the model list is empty")', "ValueError: the model list is empty"),
    ('import pulumi\nraise pulumi.RunError("set foreign:region")', "set foreign:region"),
    ('import pulumi\npulumi.Config().require("missing")', "missing"),
])
def test_a_program_that_raises_exits_2_with_its_message(capsys, tmp_path, body, expected):
    code, out, err = run(capsys, "--program", program(tmp_path, body), "--json")
    assert code == 2
    errors = json.loads(out)["errors"]
    assert errors[0]["path"] == "foreign" and expected in errors[0]["message"]


def test_not_a_program_directory_exits_2(capsys, tmp_path):
    code, out, _ = run(capsys, "--program", str(tmp_path), "--json")
    assert code == 2 and "no Pulumi.yaml" in json.loads(out)["errors"][0]["message"]


def test_no_traceback_from_a_failing_program_in_a_real_process(tmp_path):
    d = program(tmp_path, 'raise KeyError("models")')
    proc = subprocess.run([sys.executable, str(ROOT / "plan.py"), "--program", d], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert "KeyError: 'models'" in proc.stderr


def test_planning_one_model_outside_a_stack_names_the_models_own_keys():
    from llm_platform.settings import ConfigErrors
    from llm_platform.sizing.single import plan_deployment
    with pytest.raises(ConfigErrors) as exc:
        plan_deployment({"name": "coder", "model": "Qwen/Qwen2.5-Coder-7B-Instruct", "replicas": 1}, environment="prod")
    paths = {e.path for e in exc.value.errors}
    assert {"model.replicas", "model.revision", "model.checksums", "model.provenance"} <= paths
    assert not any(p.startswith("llm-platform:") for p in paths)     # nothing about a stack the caller never wrote
    plan = plan_deployment({"name": "coder", "model": "Qwen/Qwen2.5-Coder-7B-Instruct"}, environment="dev")
    assert plan.name == "coder" and plan.gpu_count >= 1 and plan.instance_type in catalog.load().instances
