"""Where the gate runs, judged by real schemas: the eks Job against Kubernetes' OpenAPI schema
(kubernetes-validate, the cluster's version), the ECS container against botocore's ECS service model, their
arguments against the gate's own parser; the IAM statements' reach; the image's pins; the deploy workflow."""
from __future__ import annotations

import re
import shutil
import subprocess

import botocore.session
import kubernetes_validate
import pytest
import yaml
from botocore.validate import ParamValidator

from components.gate import execution_policy
from llm_platform.verify import jobs
from llm_platform.verify.__main__ import parser
from tests.conftest import ROOT

SECRET = "arn:aws:secretsmanager:us-east-1:210987654321:secret:llm-platform/eks/clients/deploy-gate-AbCdEf"
IMAGE = "210987654321.dkr.ecr.us-east-1.amazonaws.com/llm-platform/eks/deploy-gate:gate-0123456789abcdef"
KEY = "arn:aws:kms:us-east-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def job():
    return jobs.job_manifest("llama-70b", IMAGE, SECRET, "llm-eks-models-abc", "eks", "us-east-1")


def test_the_eks_job_is_a_valid_kubernetes_object(job):
    version = yaml.safe_load((ROOT / "Pulumi.eks.yaml").read_text())["config"]["llm-platform:eks"]["kubernetes_version"]
    assert kubernetes_validate.validate(job, version, strict=True) == version
    broken = {**job, "spec": {**job["spec"], "backoffLimits": 0}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_gates_ports_are_the_platforms():
    from components.k8s_serving import POD_IDENTITY_AGENT
    from llm_platform.serving.proxy import TARGET_PORT
    assert (jobs.PROXY_PORT, jobs.POD_IDENTITY_AGENT) == (TARGET_PORT, POD_IDENTITY_AGENT)


def test_the_eks_job_is_hardened_and_never_retried(job):
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"} and c["resources"]["limits"]["memory"]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "deploy-gate"
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["namespace"] == "llm-llama-70b" and job["metadata"]["generateName"]
    # the proxy's certificate only: the key in the same Secret is not mounted
    (tls,) = [v for v in pod["volumes"] if "secret" in v]
    assert tls["secret"] == {"secretName": "proxy-tls", "items": [{"key": "tls.crt", "path": "ca.pem"}]}


def test_the_job_runs_the_gate_with_arguments_it_accepts(job):
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["llm-platform-verify"]
    args = parser().parse_args(c["args"])
    assert args.model == "llama-70b" and args.endpoint == "https://llama-70b.llm-llama-70b.svc/v1"
    assert args.plan == "/etc/llm-gate/llama-70b.json" and args.ca_file == "/etc/llm-gate/tls/ca.pem"
    assert args.api_key_secret == SECRET and args.json
    # metrics to CloudWatch; the report to the log, which the workflow files in S3 (the VPC writes no S3)
    assert args.results is None and args.cloudwatch_namespace == "LlmPlatform/eks/Gate"


def test_the_ecs_container_is_a_valid_task_definition_and_gets_its_key_from_ecs():
    cd = jobs.container_definition(IMAGE, SECRET, '{"deployments": []}', "-----BEGIN CERTIFICATE-----",
                                   "/llm-platform/prod/deploy-gate",
                                   "us-east-1", "llm-prod-models-abc", "prod")
    op = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition")
    report = ParamValidator().validate({"family": "llm-prod-deploy-gate", "containerDefinitions": [cd],
                                        "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
                                        "cpu": jobs.FARGATE_CPU, "memory": jobs.FARGATE_MEMORY}, op.input_shape)
    assert not report.has_errors(), report.generate_report()
    assert cd["secrets"] == [{"name": jobs.KEY_ENV, "valueFrom": SECRET}]
    assert all(SECRET not in (e["value"]) for e in cd["environment"])          # the key is never a plain value
    assert cd["readonlyRootFilesystem"] and cd["user"] == "10001:10001"
    # what the workflow's run-task override sends, parsed by the gate itself
    args = parser().parse_args(cd["command"] + ["--model", "llama-8b", "--endpoint", "https://llama-8b.x/v1"])
    assert args.plan == "env:LLM_GATE_SPECS" and args.ca_file == "env:LLM_GATE_CA_PEM"
    assert args.api_key_env == jobs.KEY_ENV and args.results is None


def test_roles_reach_only_the_gates_secret_prefix_namespace_and_image():
    bucket = "arn:aws:s3:::llm-prod-models-abc"
    results = jobs.results_policy(bucket, "prod", KEY, "us-east-1")
    (metrics,) = results                                    # no S3, no KMS: the VPC's S3 endpoints admit no writes
    assert metrics["Action"] == ["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "LlmPlatform/prod/Gate"}}
    exe = execution_policy("arn:aws:ecr:us-east-1:1:repository/llm-platform/prod/deploy-gate",
                           "arn:aws:logs:us-east-1:1:log-group:/llm-platform/prod/deploy-gate", SECRET, KEY,
                           "us-east-1")
    actions = {a for s in exe["Statement"] for a in s["Action"]}
    assert actions == {"ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                       "ecr:BatchCheckLayerAvailability", "kms:Decrypt", "logs:CreateLogStream", "logs:PutLogEvents",
                       "secretsmanager:GetSecretValue"}
    wildcard = [s["Sid"] for s in exe["Statement"] + results if s["Resource"] == "*"]
    assert wildcard == ["EcrAuth", "PutGateMetrics"]     # neither API has resource-level permissions
    assert all("*" not in a for s in exe["Statement"] + results for a in s["Action"])


def test_the_image_pins_what_the_project_pins_and_its_tag_follows_its_code(tmp_path):
    docker = (ROOT / "llm_platform" / "verify" / "Dockerfile").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M))
    dev = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([\w.]+)", (ROOT / "requirements-dev.txt").read_text(), re.M))
    for pkg, version in re.findall(r"\b(httpx|PyYAML|boto3)==([\w.]+)", docker):
        assert version == {**pins, **dev}[pkg], pkg
    assert "USER 10001" in docker and re.search(r"^FROM python:3\.11\.\d+-slim", docker, re.M)
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "llm_platform" / "verify", copy / "llm_platform" / "verify",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    assert jobs.image_tag(copy) == jobs.image_tag()
    (copy / "llm_platform" / "verify" / "judge.py").write_text("changed")
    assert jobs.image_tag(copy) != jobs.image_tag()


def test_the_deploy_workflow_gates_every_stack_after_pulumi_up_and_rolls_back_on_failure():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    steps = wf["jobs"]["up"]["steps"]
    names = [s.get("id") or s.get("uses", "") for s in steps]
    up, gate = names.index("up"), names.index("gate")
    assert steps[up]["with"]["command"] == "up" and gate > up
    assert "deploy-gate.sh run" in steps[gate]["run"]
    between = " ".join(s.get("run", "") for s in steps[up + 1:gate])
    assert "deploy-gate.sh settle" in between and "pulumi stack output gate" in between
    # the image is pushed before the update, which pins its digest (again after a first deploy made the repository)
    assert any("deploy-gate.sh image" in s.get("run", "") for s in steps[:up])
    repin = [i for i, s in enumerate(steps) if s.get("with", {}).get("command") == "up" and i != up]
    assert repin and "image_ready" in steps[repin[0]]["if"] and up < repin[0] < gate
    (rollback,) = [s for s in steps[gate + 1:] if "deploy-gate.sh rollback" in s.get("run", "")]
    assert "failure()" in rollback["if"]
    assert wf["jobs"]["up"]["strategy"]["fail-fast"] is True and wf["jobs"]["up"]["strategy"]["max-parallel"] == 1
    script = (ROOT / ".github" / "scripts" / "deploy-gate.sh").read_text()
    assert "aws autoscaling rollback-instance-refresh" in script and "aws ecs run-task" in script
    assert "kubectl create -f -" in script and "--launch-type FARGATE" in script
    assert 'assignPublicIp: "DISABLED"' in script


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (CI installs it)")
def test_the_gate_script_passes_shellcheck():
    proc = subprocess.run(["shellcheck", "-S", "style", str(ROOT / ".github" / "scripts" / "deploy-gate.sh")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# ----------------------------------------------------------------------------- the workflow's script, with stub CLIs

STUB_AWS = r'''#!/usr/bin/env bash
# records every call; answers from $STUB_DIR (exit codes per model, refresh states per group)
echo "aws $*" >> "$STUB_DIR/calls"
case "$1 $2" in
  "ecs run-task")
    model=$(printf '%s' "$*" | sed -n 's/.*"--model","\([^"]*\)".*/\1/p')
    echo "arn:aws:ecs:us-east-1:1:task/llm-prod-deploy-gate/task-$model" ;;
  "ecs wait") exit 0 ;;
  "logs get-log-events") echo '["{", "  \"verdict\": \"stub\"", "}"]' ;;
  "ecs describe-tasks")
    task=$(printf '%s' "$*" | sed -n 's/.*--tasks \([^ ]*\).*/\1/p'); model=${task##*/task-}
    cat "$STUB_DIR/exit-$model" ;;
  "autoscaling describe-auto-scaling-groups")
    case "$*" in *--filters*) printf 'llm-prod-llama-8b\tllm-prod-llama-70b\n' ;; *) cat "$STUB_DIR/version" ;; esac ;;
  "autoscaling describe-instance-refreshes")
    group=$(printf '%s' "$*" | sed -n 's/.*--auto-scaling-group-name \([^ ]*\).*/\1/p')
    cat "$STUB_DIR/refresh-$group" ;;
  *) exit 0 ;;
esac
'''

GATE_JSON = {"platform": "ec2", "models": ["llama-70b", "llama-8b"], "image": IMAGE,
             "results": "s3://llm-prod-models-abc/gate/prod",
             "ecs": {"cluster": "llm-prod-deploy-gate",
                     "task_definition": "arn:aws:ecs:us-east-1:1:task-definition/g:3",
                     "container": "gate", "command": ["--plan", "env:LLM_GATE_SPECS", "--json"],
                     "log_group": "/llm-platform/prod/deploy-gate", "subnets": ["subnet-a", "subnet-b"],
                     "security_groups": ["sg-gate"],
                     "endpoints": {"llama-70b": "https://llama-70b.llm.internal.example.com/v1",
                                   "llama-8b": "https://llama-8b.llm.internal.example.com/v1"}}}


@pytest.fixture
def stub(tmp_path):
    import json
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "aws").write_text(STUB_AWS)
    (bin_ / "aws").chmod(0o755)
    (tmp_path / "gate.json").write_text(json.dumps(GATE_JSON))
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "STUB_DIR": str(tmp_path), "POLL_SECONDS": "0",
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}

    def run(*args):
        proc = subprocess.run(["bash", str(ROOT / ".github" / "scripts" / "deploy-gate.sh"), *args], env=env,
                              capture_output=True, text=True, timeout=60)
        calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
        return proc, calls
    return tmp_path, run


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed (GitHub's runners have it)")
@pytest.mark.parametrize("codes,expected", [((0, 0), 0), ((0, 1), 1), ((1, "None"), 2)])
def test_the_gate_step_runs_every_model_in_the_vpc_and_exits_with_the_worst_verdict(stub, codes, expected):
    tmp, run = stub
    for model, code in zip(("llama-70b", "llama-8b"), codes, strict=True):
        (tmp / f"exit-{model}").write_text(f"{code}\n")
    proc, calls = run("run", str(tmp / "gate.json"))
    assert proc.returncode == expected, proc.stdout + proc.stderr
    starts = [c for c in calls if c.startswith("aws ecs run-task")]
    assert len(starts) == 2 and all("--launch-type FARGATE" in c and '"assignPublicIp":"DISABLED"' in c for c in starts)
    assert any('"--model","llama-8b","--endpoint","https://llama-8b.llm.internal.example.com/v1"' in c for c in starts)
    # both tasks are started before the first is waited for: the models are gated at once
    first_wait = next(i for i, c in enumerate(calls) if c.startswith("aws ecs wait"))
    assert first_wait > max(i for i, c in enumerate(calls) if c.startswith("aws ecs run-task"))
    # each report, as the task logged it, is filed in S3 from outside the VPC
    copies = [c for c in calls if c.startswith("aws s3 cp")]
    assert len(copies) == 2 and all("s3://llm-prod-models-abc/gate/prod/llama-" in c for c in copies)
    assert '"verdict": "stub"' in proc.stdout
    summary = (tmp / "summary.md").read_text()
    assert "| llama-70b |" in summary and "| llama-8b |" in summary


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed (GitHub's runners have it)")
def test_a_refused_rollout_is_rolled_back(stub):
    tmp, run = stub
    (tmp / "before.txt").write_text("llm-prod-llama-70b\tlt-070b\t7\nllm-prod-llama-8b\tlt-008b\t4\n")
    (tmp / "refresh-llm-prod-llama-70b").write_text("InProgress\n")      # still rolling: roll it back
    (tmp / "refresh-llm-prod-llama-8b").write_text("Successful\n")       # done: refresh back to version 4
    (tmp / "version").write_text("5\n")
    proc, calls = run("rollback", "prod", str(tmp / "before.txt"))
    assert proc.returncode == 0, proc.stderr
    assert "aws autoscaling rollback-instance-refresh --auto-scaling-group-name llm-prod-llama-70b" in calls
    (restart,) = [c for c in calls if c.startswith("aws autoscaling start-instance-refresh")]
    assert "llm-prod-llama-8b" in restart and '"LaunchTemplateId":"lt-008b","Version":"4"' in restart
