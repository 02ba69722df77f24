"""Where the gate runs, as data: the Kubernetes Job (eks), the ECS task's container and IAM policies (ec2),
the gate image's tag. Pure: plain dicts, no Pulumi (components/gate.py creates the standing pieces; the
deploy workflow starts a run on demand).

eks: one Job per model in the deployment's own namespace `llm-<name>`, calling the deployment's Service
(`https://<name>.llm-<name>.svc/v1`: the proxy and the runtime, inside the cluster) and trusting only that
proxy's certificate (the `proxy-tls` Secret's tls.crt, mounted alone: never the key). The NLB in front
admits only `allowed_client_cidrs`, which a pod is not; the ec2 gate goes through the ALB. Its client key
comes from Secrets Manager through EKS Pod Identity (service account `deploy-gate`). The pod is hardened:
non-root, read-only root filesystem, no privilege escalation, every capability dropped, RuntimeDefault
seccomp, no service-account token, CPU and memory requested, on a system node, never retried (a failed
gate is a verdict, not a flake), deleted an hour after it finishes.

ec2: an ECS Fargate task in the private subnets; the key is injected by ECS from Secrets Manager (the
execution role reads that one secret), the spec and the internal CA come as environment values.

    python -m llm_platform.verify.jobs image-tag      # the content tag the workflow pushes; Pulumi pins its digest
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

GATE_CLIENT = "deploy-gate"             # its own API key: the proxies' audit log tells gate traffic apart
SERVICE_ACCOUNT = "deploy-gate"
CONFIG_MAP = "deploy-gate"
CONTAINER = "gate"
GATE_UID = 10001
RESULTS_PREFIX = "gate"                 # s3://<model-store bucket>/gate/<stack>/<deployment>/<time>.json
KEY_ENV = "LLM_PLATFORM_API_KEY"
SPEC_ENV = "LLM_GATE_SPECS"
CA_ENV = "LLM_GATE_CA_PEM"
PROXY_PORT = 8443                               # serving/proxy.py TARGET_PORT: the Service's 443 lands here
POD_IDENTITY_AGENT = "169.254.170.23/32"        # EKS Pod Identity agent on every node
NODE_POOL_LABEL = "llm-platform/node-pool"      # components/eks.py: the system node group's label
# the gate is one asyncio process: a core and a few hundred MiB carry thousands of concurrent streams
RESOURCES = {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
FARGATE_CPU, FARGATE_MEMORY = "1024", "2048"    # the smallest Fargate size with a whole vCPU
# Stands in for the gate image's digest until the workflow has pushed this version (a first deploy): a task or
# Job using it cannot pull, so the gate reports that it could not run (exit 2) rather than running anything else.
UNBUILT_DIGEST = "sha256:" + "0" * 64
IMAGE_SOURCES = ("llm_platform/verify", "pyproject.toml")   # the Dockerfile lives in llm_platform/verify


def metrics_namespace(stack: str) -> str:
    return f"LlmPlatform/{stack}/Gate"


def results_url(bucket: str, stack: str) -> str:
    return f"s3://{bucket}/{RESULTS_PREFIX}/{stack}"


def results_prefix(stack: str) -> str:
    return f"{RESULTS_PREFIX}/{stack}"


def service_url(name: str) -> str:
    return f"https://{name}.llm-{name}.svc/v1"


def image_tag(root: Path | None = None) -> str:
    """A content tag of what goes into the gate image: it changes exactly when the gate's code or pins do, so
    the ECR repository can keep tags immutable and Pulumi and the workflow agree on the tag with no config."""
    root = root or Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for src in IMAGE_SOURCES:
        path = root / src
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return "gate-" + h.hexdigest()[:16]


def gate_args(model: str, endpoint: str, plan: str, *, ca: str | None, results: str | None,
              metrics_ns: str | None, secret_arn: str | None = None, duration: float | None = None) -> list:
    args = ["--plan", plan, "--model", model, "--endpoint", endpoint, "--json"]
    if ca:
        args += ["--ca-file", ca]
    if secret_arn:
        args += ["--api-key-secret", secret_arn]
    if results:
        args += ["--results", results]
    if metrics_ns:
        args += ["--cloudwatch-namespace", metrics_ns]
    if duration:
        args += ["--duration", f"{duration:g}"]
    return args


def job_manifest(model: str, image: str, secret_arn: str, bucket: str, stack: str, region: str,
                 duration: float | None = None, timeout_s: int = 3600) -> dict:
    """The batch/v1 Job that gates one deployment on eks (created by the deploy workflow with `kubectl create`;
    `generateName` gives every run its own Job)."""
    ns = f"llm-{model}"
    labels = {"app.kubernetes.io/name": "deploy-gate", "app.kubernetes.io/part-of": "llm-platform",
              "llm-platform/deployment": model, "llm-platform/role": "deploy-gate"}
    container = {
        "name": CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["llm-platform-verify"],
        "args": gate_args(model, service_url(model), f"/etc/llm-gate/{model}.json", ca="/etc/llm-gate/tls/ca.pem",
                          results=None, metrics_ns=metrics_namespace(stack), secret_arn=secret_arn,
                          duration=duration),
        "env": [{"name": "AWS_REGION", "value": region}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                {"name": "HOME", "value": "/tmp"}],
        "resources": RESOURCES,
        "securityContext": {"runAsNonRoot": True, "runAsUser": GATE_UID, "runAsGroup": GATE_UID,
                            "allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "spec", "mountPath": "/etc/llm-gate", "readOnly": True},
                         {"name": "proxy-ca", "mountPath": "/etc/llm-gate/tls", "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"generateName": f"deploy-gate-{model}-", "namespace": ns, "labels": labels},
        "spec": {
            "backoffLimit": 0, "activeDeadlineSeconds": timeout_s, "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": False,
                    "enableServiceLinks": False, "restartPolicy": "Never",
                    "nodeSelector": {NODE_POOL_LABEL: "system"},
                    "securityContext": {"runAsNonRoot": True, "runAsUser": GATE_UID, "runAsGroup": GATE_UID,
                                        "fsGroup": GATE_UID, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [
                        {"name": "spec", "configMap": {"name": CONFIG_MAP, "items": [
                            {"key": f"{model}.json", "path": f"{model}.json"}]}},
                        # the proxy's certificate alone: the key in the same Secret is never mounted
                        {"name": "proxy-ca", "secret": {"secretName": "proxy-tls", "items": [
                            {"key": "tls.crt", "path": "ca.pem"}]}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    ],
                },
            },
        },
    }


def container_definition(image: str, secret_arn: str, specs_json: str, ca_pem: str | None, log_group: str,
                         region: str, bucket: str, stack: str) -> dict:
    """The ECS container of the ec2 gate task; the workflow's `run-task` adds `--model` and `--endpoint`."""
    env = [{"name": SPEC_ENV, "value": specs_json}, {"name": "AWS_REGION", "value": region},
           {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    if ca_pem:
        env.append({"name": CA_ENV, "value": ca_pem})
    return {
        "name": CONTAINER, "image": image, "essential": True,
        "entryPoint": ["llm-platform-verify"], "command": ecs_command(bucket, stack, ca_pem is not None),
        "environment": env,
        "secrets": [{"name": KEY_ENV, "valueFrom": secret_arn}],
        "readonlyRootFilesystem": True, "user": f"{GATE_UID}:{GATE_UID}",
        "linuxParameters": {"capabilities": {"drop": ["ALL"]}, "initProcessEnabled": True},
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": "gate"}},
    }


def ecs_command(bucket: str, stack: str, with_ca: bool) -> list[str]:
    """The task's command; `run-task` overrides it with this plus --model and --endpoint."""
    cmd = ["--plan", f"env:{SPEC_ENV}", "--json", "--cloudwatch-namespace", metrics_namespace(stack),
           "--api-key-env", KEY_ENV]
    return cmd + (["--ca-file", f"env:{CA_ENV}"] if with_ca else [])


def reader_policy(secret_arn: str, kms_key_arn: str, region: str) -> list[dict]:
    """Read one secret (the gate's client key), decrypting through Secrets Manager only."""
    return [{"Sid": "ReadTheGateKey", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
             "Resource": secret_arn},
            {"Sid": "DecryptTheGateKey", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": kms_key_arn,
             "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}}}]


def results_policy(bucket_arn: str, stack: str, kms_key_arn: str, region: str) -> list[dict]:
    """Metrics into the stack's gate namespace, nothing else. The report goes to stdout (the task's or pod's log):
    the VPC's S3 endpoints admit no writes (llm_platform/serving/access.py), so the deploy workflow files it in
    s3://<model store>/gate/<stack>/ from outside."""
    return [{"Sid": "PutGateMetrics", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*",
             "Condition": {"StringEquals": {"cloudwatch:namespace": metrics_namespace(stack)}}}]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["image-tag"]:
        print(image_tag())
        return 0
    print("usage: python -m llm_platform.verify.jobs image-tag", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
