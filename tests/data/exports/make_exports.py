"""Write the stack-export fixtures: three clean stacks (EC2, ECS, EKS) and one file per misconfiguration,
each wrong in exactly one way, plus expected.json (file -> the mandatory violations it must yield).

    .venv/bin/python -m tests.data.exports.make_exports      # rewrites the files; the tests check they match

The documents have the shape `pulumi stack export` writes (version 3): a Stack resource, default providers,
URNs, inputs and outputs, parents, protect flags, secrets in their encrypted envelope.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from tests.policies_baseline import COMMIT, DELETE, STACKS, VLLM_ARGS, b64, mutate, user_data

HERE = Path(__file__).resolve().parent
PROJECT = "llm-serving"
STATEFUL = ("aws:kms/key:Key", "aws:s3/bucket:Bucket", "aws:secretsmanager/secret:Secret",
            "aws:cloudwatch/logGroup:LogGroup")


def export(stack: list[dict], stack_name: str = "prod") -> dict:
    root = f"urn:pulumi:{stack_name}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{stack_name}"
    providers = {}
    resources = [{"urn": root, "custom": False, "type": "pulumi:pulumi:Stack", "outputs": {}}]
    for x in stack:
        pkg = x["type"].split(":")[0]
        if pkg not in providers:
            purn = f"urn:pulumi:{stack_name}::{PROJECT}::pulumi:providers:{pkg}::default"
            providers[pkg] = f"{purn}::04da6b54-80e4-46f7-96ec-b56ff0331ba9"
            resources.append({"urn": purn, "custom": True, "id": "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
                              "type": f"pulumi:providers:{pkg}", "inputs": {"region": "us-east-1"} if pkg == "aws"
                              else {}, "outputs": {}})
        item = {"urn": f"urn:pulumi:{stack_name}::{PROJECT}::{x['type']}::{x['name']}", "custom": True,
                "id": x["id"], "type": x["type"], "inputs": copy.deepcopy(x["inputs"]),
                "outputs": {**copy.deepcopy(x["inputs"]), "id": x["id"], **copy.deepcopy(x["outputs"])},
                "parent": root, "provider": providers[pkg]}
        if x["type"] in STATEFUL:
            item["protect"] = True
        resources.append(item)
    return {"version": 3, "deployment": {
        "manifest": {"time": "2026-11-25T12:00:00.000000000Z", "magic": "", "version": "v3.209.0"},
        "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:7Wq3m0cEb0Q=:v1:aF1aY0uHrHUh6v0n:Q1zxbw=="}},
        "resources": resources}}


def ud(**kw) -> str:
    return b64(user_data(**kw))


ARGS = VLLM_ARGS
IGW = {"type": "aws:ec2/internetGateway:InternetGateway", "name": "igw", "id": "igw-0a1b2c", "inputs":
       {"vpcId": "vpc-0a1"}, "outputs": {}}
IGW_ROUTE = {"type": "aws:ec2/route:Route", "name": "private-default", "id": "r-rtb-0p1-0.0.0.0/0", "inputs":
             {"routeTableId": "rtb-0p1", "destinationCidrBlock": "0.0.0.0/0", "gatewayId": "igw-0a1b2c"},
             "outputs": {}}
SSH_RULE = {"type": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "name": "ssh-from-vpn",
            "id": "sgr-0ssh", "inputs": {"securityGroupId": "sg-0ins", "ipProtocol": "tcp", "fromPort": 22,
                                         "toPort": 22, "cidrIpv4": "10.8.0.0/16"}, "outputs": {}}
PUBLIC_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::llm-models/*"}]})
CPU_RULE_INLINE = [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}]

# file -> (baseline, changes, expected mandatory violations [(policy, resource name)])
CASES = {
    "open-ingress-world": ("ec2", {"alb-from-clients.cidrIpv4": "0.0.0.0/0"},
                           [("no-open-ingress", "alb-from-clients")]),
    "open-ingress-inline-ipv6": ("ec2", {"alb-sg.ingress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443,
                                                             "ipv6CidrBlocks": ["::/0"]}]},
                                 [("no-open-ingress", "alb-sg")]),
    "ssh-port-open": ("ec2", {"+": [SSH_RULE]}, [("no-remote-admin-ports", "ssh-from-vpn")]),
    "lb-internet-facing": ("ec2", {"api:loadBalancer.internal": False}, [("internal-load-balancers", "api")]),
    "igw-route-in-inference-subnet": ("ec2", {"+": [IGW, IGW_ROUTE]},
                                      [("inference-subnets-private", "private-default")]),
    "subnet-public-ip-on-launch": ("ec2", {"private-a:ec2/subnet.mapPublicIpOnLaunch": True},
                                   [("inference-subnets-private", "private-a")]),
    "no-flow-logs": ("ec2", {"flow-log!": None}, [("vpc-flow-logs", "vpc")]),
    "imdsv1-allowed": ("ec2", {"llm-8b:launchTemplate.metadataOptions.httpTokens": "optional"},
                       [("ec2-imdsv2-required", "llm-8b")]),
    "ebs-unencrypted": ("ec2", {"llm-8b:launchTemplate.blockDeviceMappings[0].ebs.encrypted": "false"},
                        [("ebs-volumes-encrypted", "llm-8b")]),
    "public-ip-launch-template": ("ec2", {"llm-8b:launchTemplate.networkInterfaces[0].associatePublicIpAddress":
                                          "true"}, [("no-public-ip", "llm-8b")]),
    "ecs-public-ip": ("ecs", {"llm-8b-svc.networkConfiguration.assignPublicIp": True},
                      [("no-public-ip", "llm-8b-svc")]),
    "tls-policy-weak": ("ec2", {"https.sslPolicy": "ELBSecurityPolicy-2016-08"}, [("https-listeners", "https")]),
    "listener-plain-http": ("ec2", {"https.protocol": "HTTP", "https.sslPolicy": DELETE,
                                    "https.certificateArn": DELETE}, [("https-listeners", "https")]),
    "target-group-http": ("ec2", {"llm-8b:targetGroup.protocol": "HTTP"}, [("https-target-groups", "llm-8b")]),
    "alb-keeps-invalid-headers": ("ec2", {"api:loadBalancer.dropInvalidHeaderFields": False},
                                  [("alb-drop-invalid-headers", "api")]),
    "vllm-listens-on-all-interfaces": ("ec2", {"llm-8b:launchTemplate.userData": ud(
        vllm_args=ARGS.replace("--host 127.0.0.1", "--host 0.0.0.0"))}, [("runtime-behind-auth-proxy", "llm-8b")]),
    "vllm-port-published": ("ec2", {"llm-8b:launchTemplate.userData": ud(docker_opts="--gpus all -p 8000:8000")},
                            [("runtime-behind-auth-proxy", "llm-8b")]),
    "ecs-runtime-on-task-address": ("ecs", {"llm-8b-task.containerDefinitions": None},
                                    [("runtime-behind-auth-proxy", "llm-8b-task")]),
    "gpu-memory-utilization-099": ("ec2", {"llm-8b:launchTemplate.userData": ud(
        vllm_args=ARGS.replace("--gpu-memory-utilization 0.90", "--gpu-memory-utilization 0.99"))},
                                   [("gpu-memory-utilization", "llm-8b")]),
    "trust-remote-code": ("ec2", {"llm-8b:launchTemplate.userData": ud(vllm_args=ARGS + " --trust-remote-code")},
                          [("no-trust-remote-code", "llm-8b")]),
    "ollama-in-prod": ("ec2", {"llm-8b:launchTemplate.userData": ud(
        vllm_args="serve", image="ollama/ollama:0.6.2@sha256:" + "0" * 64,
        docker_opts="--gpus all --network host -e OLLAMA_HOST=127.0.0.1:11434 -e OLLAMA_CONTEXT_LENGTH=8192")},
                       [("prod-runtime-vllm-or-tgi", "llm-8b")]),
    "cpu-instance-in-prod": ("ec2", {"llm-8b:launchTemplate.instanceType": "m7i.4xlarge"},
                             [("no-cpu-inference-in-prod", "llm-8b")]),
    "docker-without-gpus": ("ec2", {"llm-8b:launchTemplate.userData": ud(docker_opts="--network host")},
                            [("no-cpu-inference-in-prod", "llm-8b")]),
    "waf-not-associated": ("ec2", {"api-acl!:webAclAssociation": None}, [("waf-on-inference-lb", "api")]),
    "waf-without-rate-limit": ("ec2", {"api-acl:wafv2/webAcl:.rules": [
        {"name": "body-size", "priority": 1, "action": {"block": {}},
         "statement": {"sizeConstraintStatement": {"fieldToMatch": {"body": {}}, "comparisonOperator": "GT",
                                                   "size": 131072, "textTransformations": []}},
         "visibilityConfig": {"metricName": "size"}}]}, [("waf-rate-and-size-limits", "api-acl")]),
    "log-group-no-retention": ("ec2", {"runtime-logs.retentionInDays": DELETE},
                               [("log-group-retention", "runtime-logs")]),
    "log-group-no-kms": ("ec2", {"runtime-logs.kmsKeyId": DELETE}, [("log-group-kms", "runtime-logs")]),
    "request-logging-on": ("ec2", {"llm-8b:launchTemplate.userData": ud(vllm_args=ARGS + " --enable-log-requests")},
                           [("no-request-logging", "llm-8b")]),
    "hf-token-in-user-data": ("ec2", {"llm-8b:launchTemplate.userData": ud(
        extra="export HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789")}, [("no-secret-literals", "llm-8b")]),
    "ecs-api-key-in-env": ("ecs", {"llm-8b-task.containerDefinitions": None}, [("no-secret-literals", "llm-8b-task")]),
    "kms-no-rotation": ("ec2", {"cmk.enableKeyRotation": False}, [("kms-key-rotation", "cmk")]),
    "secret-default-key": ("ec2", {"api-keys:secret:Secret.kmsKeyId": DELETE}, [("secrets-on-cmk", "api-keys")]),
    "bucket-public-policy": ("ec2", {"models:bucketPolicy.policy": PUBLIC_POLICY},
                             [("s3-bucket-not-public", "models")]),
    "model-not-allowed": ("ec2", {"llm-8b:launchTemplate.userData": ud(vllm_args=ARGS.replace(
        "meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"))}, [("model-allow-list", "llm-8b")]),
    "revision-main": ("ec2", {"llm-8b:launchTemplate.userData": ud(vllm_args=ARGS.replace(COMMIT, "main"))},
                      [("model-revision-pinned", "llm-8b")]),
    "no-checksum": ("ec2", {"llm-8b:launchTemplate.userData": ud(verify=False),
                            "llm-8b:launchTemplate.tags.llm-platform:checksum": DELETE},
                    [("model-checksum-verified", "llm-8b")]),
    "provenance-pending": ("ec2", {"llm-8b:launchTemplate.tags.llm-platform:provenance-review-status": "pending"},
                           [("model-provenance-approved", "llm-8b")]),
    "model-does-not-fit": ("ec2", {"llm-8b:launchTemplate.instanceType": "g4dn.xlarge"},
                           [("model-fits-gpu", "llm-8b")]),
    "tensor-parallel-exceeds-gpus": ("ec2", {"llm-8b:launchTemplate.userData": ud(vllm_args=ARGS.replace(
        "--tensor-parallel-size 1", "--tensor-parallel-size 4"))}, [("model-fits-gpu", "llm-8b")]),
    "alarms-not-wired": ("ec2", {"gpu-memory.alarmActions": [], "latency-p99.alarmActions": []},
                         [("inference-alarms", "llm-8b")]),
    "eks-public-endpoint": ("k8s", {"llm:cluster.vpcConfig.endpointPublicAccess": True},
                            [("eks-private-endpoint", "llm")]),
    "eks-secrets-unencrypted": ("k8s", {"llm:cluster.encryptionConfig": DELETE}, [("eks-secrets-encrypted", "llm")]),
    "k8s-root-container": ("k8s", {"llm-8b:Deployment.spec.template.spec.securityContext.runAsNonRoot": False,
                                   "llm-8b:Deployment.spec.template.spec.containers[0].securityContext.runAsNonRoot":
                                       DELETE,
                                   "llm-8b:Deployment.spec.template.spec.containers[0].securityContext.runAsUser": 0},
                           [("k8s-run-as-non-root", "llm-8b")]),
    "k8s-privilege-escalation": ("k8s", {"llm-8b:Deployment.spec.template.spec.containers[1].securityContext."
                                         "allowPrivilegeEscalation": True},
                                 [("k8s-no-privilege-escalation", "llm-8b")]),
    "k8s-writable-root": ("k8s", {"llm-8b:Deployment.spec.template.spec.containers[0].securityContext."
                                  "readOnlyRootFilesystem": False}, [("k8s-read-only-root-filesystem", "llm-8b")]),
    "k8s-image-latest": ("k8s", {"llm-8b:Deployment.spec.template.spec.containers[0].image":
                                 "vllm/vllm-openai:latest"}, [("container-image-pinned", "llm-8b")]),
    "k8s-gpu-request-without-limit": ("k8s", {
        "llm-8b:Deployment.spec.template.spec.containers[0].resources": {"requests": {"nvidia.com/gpu": "1"}}},
                                      [("k8s-gpu-limits", "llm-8b")]),
    "k8s-no-probes": ("k8s", {"llm-8b:Deployment.spec.template.spec.containers[0].readinessProbe": DELETE,
                              "llm-8b:Deployment.spec.template.spec.containers[0].livenessProbe": DELETE},
                      [("k8s-probes", "llm-8b")]),
    "k8s-public-service": ("k8s", {"llm-8b:Service.metadata.annotations": {}}, [("internal-load-balancers", "llm-8b")]),
    "single-az-asg": ("ec2", {"llm-8b:group:Group.minSize": 1, "llm-8b:group:Group.desiredCapacity": 1},
                      [("prod-multi-az", "llm-8b")]),
    "unpinned-pip-install": ("ec2", {"llm-8b:launchTemplate.userData": ud(extra="pip install vllm")},
                             [("server-install-pinned", "llm-8b")]),
    "rest-api-without-auth": ("sagemaker", {"llm-api:apigateway/method:Method.authorization": "NONE"},
                              [("inference-api-authenticated", "llm-api")]),
    "rest-api-unthrottled": ("sagemaker", {"llm-api!:methodSettings": None},
                             [("inference-api-rate-limited", "llm-api")]),
    "sagemaker-config-no-kms": ("sagemaker", {"llm-8b:endpointConfiguration.kmsKeyArn": DELETE},
                                [("sagemaker-endpoint-encrypted", "llm-8b")]),
    "sagemaker-single-instance": ("sagemaker", {
        "llm-8b:endpointConfiguration.productionVariants[0].initialInstanceCount": 1}, [("prod-multi-az", "llm-8b")]),
    "plain-http-model-url": ("k8s", {"llm-8b:Deployment.spec.template.spec.containers[1].env": [
        {"name": "OPENAI_API_BASE", "value": "http://vllm.llm.svc.cluster.local:8000/v1"}]},
                             [("no-plaintext-model-urls", "llm-8b")]),
    "k8s-no-network-policy": ("k8s", {"llm-8b!:NetworkPolicy": None}, [("k8s-network-policy", "llm-8b")]),
    "image-tag-without-digest": ("k8s", {"llm-8b:Deployment.spec.template.spec.containers[0].image":
                                         "vllm/vllm-openai:v0.9.2"}, [("container-image-pinned", "llm-8b")]),
}


def _ecs_containers(kind: str) -> str:
    from tests.policies_baseline import ecs_stack
    defs = json.loads(next(x for x in ecs_stack() if x["name"] == "llm-8b-task")["inputs"]["containerDefinitions"])
    if kind == "ecs-runtime-on-task-address":
        defs[0]["command"] = [a if a != "127.0.0.1" else "0.0.0.0" for a in defs[0]["command"]]
    if kind == "ecs-api-key-in-env":
        defs[0]["environment"].append({"name": "VLLM_API_KEY", "value": "sk-live-9f8e7d6c5b4a39281706f5e4"})
    return json.dumps(defs)


def build() -> dict[str, dict]:
    docs = {f"clean-{k}": export(f()) for k, f in STACKS.items()}
    for name, (base, changes, _) in CASES.items():
        changes = dict(changes)
        if "llm-8b-task.containerDefinitions" in changes:
            changes["llm-8b-task.containerDefinitions"] = _ecs_containers(name)
        docs[name] = export(mutate(STACKS[base](), changes))
    return docs


def expected() -> dict[str, list]:
    out = {f"clean-{k}": [] for k in STACKS}
    out.update({name: [list(e) for e in exp] for name, (_, _, exp) in CASES.items()})
    return out


def main() -> None:
    for name, doc in build().items():
        (HERE / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (HERE / "expected.json").write_text(json.dumps(expected(), indent=1) + "\n")


if __name__ == "__main__":
    main()
