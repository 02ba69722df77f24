"""Compliant baseline stacks for the policy tests, written the way three different programs would:

- `ec2_stack()`: vLLM in docker on an Auto Scaling group behind an internal ALB with WAF, nginx as the
  TLS + API-key proxy, models pinned and verified (shell user data, separate SG rule resources);
- `ecs_stack()`: vLLM as an ECS task (awsvpc) with an nginx sidecar, tags with other key names;
- `k8s_stack()`: a private EKS cluster with a hardened vLLM Deployment and an auth sidecar.

Each resource is {type, name, id, inputs, outputs}: the unit tests turn them into policies.core.Resource
views, tests/data/exports/make_exports.py into `pulumi stack export` documents.
"""
from __future__ import annotations

import base64
import copy
import json
from typing import Any

from llm_platform.policies.core import Resource

ACCT = "123456789012"
REGION = "us-east-1"
COMMIT = "0e9e39f249a16976918f6564b8830bc894c89659"
DIGEST = "eea47a19a82a204ff17062f46bf710f4ca1009ca590734e7d901dbcbd7bde0e8"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCT}:llm-alarms"
LB_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCT}:loadbalancer/app/llm-api/50dc6c495c0c9188"
TG_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCT}:targetgroup/llm-8b/73e2d6bc24d8a067"
ACL_ARN = f"arn:aws:wafv2:{REGION}:{ACCT}:regional/webacl/llm-api/a1b2c3d4"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCT}:secret:llm/api-keys-AbCdEf"
SECRET_ENVELOPE = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                   "ciphertext": "v1:qnAz6RrN0XbX8sU0:W6BZ4LmJ0Xr0kQ7m5hYBjw9P3eHkQ=="}

NGINX_CONF = """server {
  listen 8443 ssl;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate /etc/llm/tls/cert.pem;
  ssl_certificate_key /etc/llm/tls/key.pem;
  client_max_body_size 128k;
  log_format llm '$remote_addr $request_method $uri $status $request_time';
  access_log /var/log/nginx/llm.log llm;
  location /v1/ {
    auth_request /auth;
    proxy_pass http://127.0.0.1:8000;
  }
  location = /auth { internal; if ($http_authorization = "") { return 401; } return 204; }
}"""

VLLM_ARGS = ("--model meta-llama/Llama-3.1-8B-Instruct --revision " + COMMIT +
             " --host 127.0.0.1 --port 8000 --tensor-parallel-size 1 --gpu-memory-utilization 0.90"
             " --max-model-len 8192 --max-num-seqs 16")


def user_data(vllm_args: str = VLLM_ARGS, image: str = "vllm/vllm-openai:v0.9.2@sha256:" + "a" * 64, docker_opts: str =
              "--gpus all --network host", extra: str = "", verify: bool = True) -> str:
    """The EC2 baseline's user data (plain text; encoded by the launch template)."""
    lines = ["#!/bin/bash", "set -euo pipefail",
             f"aws s3 sync s3://llm-models/models/llama-8b/{COMMIT}/ /opt/model",
             "cd /opt/model && sha256sum --check --strict SHA256SUMS" if verify else "cd /opt/model",
             "aws secretsmanager get-secret-value --secret-id llm/api-keys --query SecretString --output text "
             "> /run/llm/keys",
             "cat > /etc/nginx/conf.d/llm.conf <<'EOF'", NGINX_CONF, "EOF",
             "systemctl enable --now nginx"]
    if extra:
        lines.append(extra)
    lines.append(f"docker run -d --name vllm {docker_opts} -v /opt/model:/root/.cache/huggingface {image} \\\n"
                 f"  {vllm_args}")
    return "\n".join(lines) + "\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def r(type_: str, logical: str, inputs: dict, id_: str | None = None, **outputs) -> dict:
    return {"type": type_, "name": logical, "id": id_ or f"{logical}-0a1b2c3d", "inputs": inputs, "outputs": outputs}


PROVENANCE_TAGS = {
    "llm-platform:model": "meta-llama/Llama-3.1-8B-Instruct",
    "llm-platform:revision": COMMIT,
    "llm-platform:checksum": DIGEST,
    "llm-platform:provenance-source": "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct",
    "llm-platform:provenance-license": "llama3.1",
    "llm-platform:provenance-approved-by": "security@example.com",
    "llm-platform:provenance-review-status": "approved",
}


def network(prefix: str = "") -> list[dict]:
    """VPC, two private subnets in two AZs, a route table without internet route, flow logs."""
    p = prefix
    return [
        r("aws:ec2/vpc:Vpc", f"{p}vpc", {"cidrBlock": "10.40.0.0/16", "enableDnsHostnames": True}, "vpc-0a1"),
        r("aws:ec2/subnet:Subnet", f"{p}private-a", {"vpcId": "vpc-0a1", "cidrBlock": "10.40.0.0/20",
                                                    "availabilityZone": "us-east-1a", "mapPublicIpOnLaunch": False},
          "subnet-0aaa"),
        r("aws:ec2/subnet:Subnet", f"{p}private-b", {"vpcId": "vpc-0a1", "cidrBlock": "10.40.16.0/20",
                                                    "availabilityZone": "us-east-1b", "mapPublicIpOnLaunch": False},
          "subnet-0bbb"),
        r("aws:ec2/routeTable:RouteTable", f"{p}private", {"vpcId": "vpc-0a1"}, "rtb-0p1"),
        r("aws:ec2/routeTableAssociation:RouteTableAssociation", f"{p}private-a",
          {"subnetId": "subnet-0aaa", "routeTableId": "rtb-0p1"}, "rtbassoc-1"),
        r("aws:ec2/routeTableAssociation:RouteTableAssociation", f"{p}private-b",
          {"subnetId": "subnet-0bbb", "routeTableId": "rtb-0p1"}, "rtbassoc-2"),
        r("aws:ec2/vpcEndpoint:VpcEndpoint", f"{p}s3", {"vpcId": "vpc-0a1", "serviceName": "com.amazonaws.us-east-1.s3",
                                                       "vpcEndpointType": "Gateway", "routeTableIds": ["rtb-0p1"]},
          "vpce-0s3"),
        r("aws:ec2/flowLog:FlowLog", f"{p}flow-log", {"vpcId": "vpc-0a1", "trafficType": "ALL",
                                                     "logDestination":
                                                         f"arn:aws:logs:{REGION}:{ACCT}:log-group:/llm/flow"},
          "fl-0a1"),
        r("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", f"{p}default-sg", {"vpcId": "vpc-0a1"}, "sg-0def"),
    ]


def shared(prefix: str = "") -> list[dict]:
    """KMS key, the API-key secret, the model bucket, log groups, the alarm topic."""
    p = prefix
    return [
        r("aws:kms/key:Key", f"{p}cmk", {"description": "llm", "enableKeyRotation": True}, "1234abcd",
          arn=KEY_ARN),
        r("aws:secretsmanager/secret:Secret", f"{p}api-keys", {"name": "llm/api-keys", "kmsKeyId": KEY_ARN},
          SECRET_ARN, arn=SECRET_ARN),
        r("aws:secretsmanager/secretVersion:SecretVersion", f"{p}api-keys",
          {"secretId": SECRET_ARN, "secretString": SECRET_ENVELOPE}, f"{SECRET_ARN}|v1"),
        r("aws:secretsmanager/secretRotation:SecretRotation", f"{p}api-keys",
          {"secretId": SECRET_ARN, "rotationLambdaArn": f"arn:aws:lambda:{REGION}:{ACCT}:function:rotate",
           "rotationRules": {"automaticallyAfterDays": 30}}, f"{SECRET_ARN}|rot"),
        r("aws:s3/bucket:Bucket", f"{p}models", {"bucket": "llm-models"}, "llm-models",
          arn="arn:aws:s3:::llm-models", bucket="llm-models"),
        r("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", f"{p}models",
          {"bucket": "llm-models", "rules": [{"applyServerSideEncryptionByDefault": {
              "sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY_ARN}, "bucketKeyEnabled": True}]}, "llm-models"),
        r("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{p}models",
          {"bucket": "llm-models", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
           "restrictPublicBuckets": True}, "llm-models"),
        r("aws:s3/bucketVersioning:BucketVersioning", f"{p}models",
          {"bucket": "llm-models", "versioningConfiguration": {"status": "Enabled"}}, "llm-models"),
        r("aws:s3/bucketPolicy:BucketPolicy", f"{p}models", {"bucket": "llm-models", "policy": json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                                    "Resource": "arn:aws:s3:::llm-models/*",
                                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})},
          "llm-models"),
        r("aws:cloudwatch/logGroup:LogGroup", f"{p}runtime-logs", {"name": "/llm/runtime", "retentionInDays": 90,
                                                                  "kmsKeyId": KEY_ARN}, "/llm/runtime"),
        r("aws:sns/topic:Topic", f"{p}alarms", {"name": "llm-alarms", "kmsMasterKeyId": KEY_ARN}, TOPIC_ARN,
          arn=TOPIC_ARN),
    ]


def waf() -> list[dict]:
    return [
        r("aws:wafv2/webAcl:WebAcl", "api-acl", {
            "scope": "REGIONAL", "defaultAction": {"allow": {}},
            "rules": [
                {"name": "rate", "priority": 0, "action": {"block": {}},
                 "statement": {"rateBasedStatement": {"limit": 600, "aggregateKeyType": "IP"}},
                 "visibilityConfig": {"metricName": "rate", "sampledRequestsEnabled": True,
                                      "cloudwatchMetricsEnabled": True}},
                {"name": "body-size", "priority": 1, "action": {"block": {}},
                 "statement": {"sizeConstraintStatement": {"fieldToMatch": {"body": {"oversizeHandling": "MATCH"}},
                                                           "comparisonOperator": "GT", "size": 131072,
                                                           "textTransformations": [{"priority": 0,
                                                                                    "type": "NONE"}]}},
                 "visibilityConfig": {"metricName": "size", "sampledRequestsEnabled": True,
                                      "cloudwatchMetricsEnabled": True}}],
            "visibilityConfig": {"metricName": "llm", "sampledRequestsEnabled": True,
                                 "cloudwatchMetricsEnabled": True}}, "a1b2c3d4", arn=ACL_ARN),
        r("aws:wafv2/webAclAssociation:WebAclAssociation", "api-acl", {"resourceArn": LB_ARN, "webAclArn": ACL_ARN},
          f"{ACL_ARN},{LB_ARN}"),
    ]


def load_balancer() -> list[dict]:
    return [
        r("aws:ec2/securityGroup:SecurityGroup", "alb-sg", {"vpcId": "vpc-0a1", "description": "internal ALB"},
          "sg-0alb"),
        r("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "alb-from-clients",
          {"securityGroupId": "sg-0alb", "ipProtocol": "tcp", "fromPort": 443, "toPort": 443,
           "cidrIpv4": "10.10.0.0/16"}, "sgr-01"),
        r("aws:ec2/securityGroup:SecurityGroup", "instances-sg", {"vpcId": "vpc-0a1", "description": "GPU nodes"},
          "sg-0ins"),
        r("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "proxy-from-alb",
          {"securityGroupId": "sg-0ins", "ipProtocol": "tcp", "fromPort": 8443, "toPort": 8443,
           "referencedSecurityGroupId": "sg-0alb"}, "sgr-02"),
        r("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "alb-to-proxy",
          {"securityGroupId": "sg-0alb", "ipProtocol": "tcp", "fromPort": 8443, "toPort": 8443,
           "referencedSecurityGroupId": "sg-0ins"}, "sgr-03"),
        r("aws:lb/loadBalancer:LoadBalancer", "api", {"internal": True, "loadBalancerType": "application",
                                                      "subnets": ["subnet-0aaa", "subnet-0bbb"],
                                                      "securityGroups": ["sg-0alb"],
                                                      "dropInvalidHeaderFields": True}, LB_ARN,
          arn=LB_ARN, arnSuffix="app/llm-api/50dc6c495c0c9188"),
        r("aws:lb/targetGroup:TargetGroup", "llm-8b", {"port": 8443, "protocol": "HTTPS", "vpcId": "vpc-0a1",
                                                       "targetType": "instance",
                                                       "healthCheck": {"path": "/health", "protocol": "HTTPS"}},
          TG_ARN, arn=TG_ARN, arnSuffix="targetgroup/llm-8b/73e2d6bc24d8a067"),
        r("aws:lb/listener:Listener", "https", {"loadBalancerArn": LB_ARN, "port": 443, "protocol": "HTTPS",
                                                "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                                                "certificateArn": f"arn:aws:acm:{REGION}:{ACCT}:certificate/abc",
                                                "defaultActions": [{"type": "forward", "targetGroupArn": TG_ARN}]},
          f"{LB_ARN}/listener-1"),
        r("aws:lb/listener:Listener", "http-redirect", {
            "loadBalancerArn": LB_ARN, "port": 80, "protocol": "HTTP",
            "defaultActions": [{"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443",
                                                                 "statusCode": "HTTP_301"}}]},
          f"{LB_ARN}/listener-2"),
    ]


def ec2_stack(user_data_text: str | None = None) -> list[dict]:
    """vLLM on an Auto Scaling group of g5.xlarge behind the internal ALB."""
    lt_id = "lt-0abc123"
    return network() + shared() + waf() + load_balancer() + [
        r("aws:ec2/launchTemplate:LaunchTemplate", "llm-8b", {
            "imageId": "ami-0abcdef1234567890", "instanceType": "g5.xlarge",
            "userData": b64(user_data_text if user_data_text is not None else user_data()),
            "metadataOptions": {"httpTokens": "required", "httpEndpoint": "enabled", "httpPutResponseHopLimit": 2},
            "networkInterfaces": [{"deviceIndex": 0, "associatePublicIpAddress": "false",
                                   "securityGroups": ["sg-0ins"]}],
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "kmsKeyId": KEY_ARN,
                                                                       "volumeSize": 100, "volumeType": "gp3"}}],
            "tags": dict(PROVENANCE_TAGS)}, lt_id),
        r("aws:autoscaling/group:Group", "llm-8b", {
            "minSize": 2, "maxSize": 4, "desiredCapacity": 2,
            "vpcZoneIdentifiers": ["subnet-0aaa", "subnet-0bbb"], "targetGroupArns": [TG_ARN],
            "launchTemplate": {"id": lt_id, "version": "$Latest"}, "healthCheckType": "ELB",
            "tags": [{"key": "Name", "value": "llm-8b", "propagateAtLaunch": True}]}, "llm-8b-asg",
          name="llm-8b-asg",
          arn=f"arn:aws:autoscaling:{REGION}:{ACCT}:autoScalingGroup:1:autoScalingGroupName/llm-8b-asg"),
        r("aws:cloudwatch/metricAlarm:MetricAlarm", "gpu-memory", {
            "comparisonOperator": "GreaterThanThreshold", "evaluationPeriods": 3, "threshold": 95,
            "metricName": "nvidia_smi_utilization_memory", "namespace": "CWAgent", "period": 60,
            "statistic": "Maximum", "dimensions": {"AutoScalingGroupName": "llm-8b-asg"},
            "alarmActions": [TOPIC_ARN]}, "gpu-memory"),
        r("aws:cloudwatch/metricAlarm:MetricAlarm", "latency-p99", {
            "comparisonOperator": "GreaterThanThreshold", "evaluationPeriods": 5, "threshold": 5,
            "metricName": "TargetResponseTime", "namespace": "AWS/ApplicationELB", "period": 60,
            "extendedStatistic": "p99", "dimensions": {"TargetGroup": "targetgroup/llm-8b/73e2d6bc24d8a067",
                                                       "LoadBalancer": "app/llm-api/50dc6c495c0c9188"},
            "alarmActions": [TOPIC_ARN]}, "latency-p99"),
    ]


def ecs_stack() -> list[dict]:
    """The same model as an ECS service: vLLM and an nginx sidecar in one awsvpc task."""
    containers = [
        {"name": "vllm", "image": "public.ecr.aws/example/vllm-openai:v0.9.2@sha256:" + "b" * 64, "essential": True,
         "command": ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--revision", COMMIT, "--host", "127.0.0.1",
                     "--port", "8000", "--max-model-len", "8192"],
         "environment": [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "MODEL_SHA256", "value": DIGEST}],
         "secrets": [{"name": "HF_TOKEN", "valueFrom": SECRET_ARN}],
         "resourceRequirements": [{"type": "GPU", "value": "1"}],
         "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/llm/runtime"}}},
        {"name": "auth-proxy", "image": "public.ecr.aws/nginx/nginx:1.27-alpine@sha256:" + "d" * 64, "essential": True,
         "portMappings": [{"containerPort": 8443, "hostPort": 8443, "protocol": "tcp"}],
         "command": ["sh", "-c", "echo 'location / { auth_request /auth; proxy_pass http://127.0.0.1:8000; }' "
                                 "> /etc/nginx/conf.d/llm.conf && nginx -g 'daemon off;'"]},
    ]
    task_arn = f"arn:aws:ecs:{REGION}:{ACCT}:task-definition/llm-8b:3"
    return network("ecs-") + shared("ecs-") + [
        r("aws:ecs/taskDefinition:TaskDefinition", "llm-8b-task", {
            "family": "llm-8b", "networkMode": "awsvpc", "requiresCompatibilities": ["EC2"],
            "containerDefinitions": json.dumps(containers),
            "tags": {"model": "meta-llama/Llama-3.1-8B-Instruct", "model-source": "huggingface.co/meta-llama",
                     "approved-by": "ml-security", "review-status": "approved"}}, task_arn, arn=task_arn),
        r("aws:ecs/service:Service", "llm-8b-svc", {
            "cluster": f"arn:aws:ecs:{REGION}:{ACCT}:cluster/llm", "taskDefinition": task_arn, "desiredCount": 2,
            "networkConfiguration": {"subnets": ["subnet-0aaa", "subnet-0bbb"], "securityGroups": ["sg-0ins"],
                                     "assignPublicIp": False}}, "llm-8b-svc", name="llm-8b-svc"),
        r("aws:cloudwatch/metricAlarm:MetricAlarm", "ecs-gpu", {
            "comparisonOperator": "GreaterThanThreshold", "evaluationPeriods": 3, "threshold": 95,
            "metricName": "GPUMemoryUtilization", "namespace": "ECS/ContainerInsights", "period": 60,
            "statistic": "Maximum", "dimensions": {"ServiceName": "llm-8b-svc", "ClusterName": "llm"},
            "alarmActions": [TOPIC_ARN]}, "ecs-gpu"),
    ]


def _hardened(extra: dict) -> dict:
    base = {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            "readinessProbe": {"httpGet": {"path": "/health", "port": 8443, "scheme": "HTTPS"}},
            "livenessProbe": {"httpGet": {"path": "/health", "port": 8443, "scheme": "HTTPS"}}}
    base.update(extra)
    return base


def k8s_stack() -> list[dict]:
    """A private EKS cluster running vLLM with an auth sidecar."""
    vllm = _hardened({
        "name": "vllm", "image": "vllm/vllm-openai:v0.9.2@sha256:" + "c" * 64,
        "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--revision", COMMIT, "--host", "127.0.0.1",
                 "--port", "8000", "--max-model-len", "8192", "--gpu-memory-utilization", "0.9"],
        "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}],
        "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "24Gi"}, "requests": {"cpu": "3"}}})
    proxy = _hardened({"name": "auth-proxy", "image": "quay.io/oauth2-proxy/oauth2-proxy:v7.6.0@sha256:" + "e" * 64,
                       "args": ["--upstream=http://127.0.0.1:8000", "--https-address=:8443"],
                       "ports": [{"containerPort": 8443}]})
    return [
        r("aws:eks/cluster:Cluster", "llm", {
            "roleArn": f"arn:aws:iam::{ACCT}:role/eks",
            "vpcConfig": {"subnetIds": ["subnet-0aaa", "subnet-0bbb"], "endpointPrivateAccess": True,
                          "endpointPublicAccess": False},
            "encryptionConfig": {"provider": {"keyArn": KEY_ARN}, "resources": ["secrets"]}}, "llm"),
        r("kubernetes:apps/v1:Deployment", "llm-8b", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "llm-8b", "labels": {"app": "llm-8b"}, "annotations": {
                "models.example.com/checksum": DIGEST, "models.example.com/provenance-source":
                    "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct",
                "models.example.com/review-status": "approved"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "llm-8b"}},
                     "template": {"metadata": {"labels": {"app": "llm-8b"}},
                                  "spec": {"nodeSelector": {"node.kubernetes.io/instance-type": "g5.xlarge"},
                                           "securityContext": {"runAsNonRoot": True},
                                           "containers": [vllm, proxy]}}}}, "llm/llm-8b"),
        r("kubernetes:core/v1:Service", "llm-8b", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "llm-8b", "annotations": {
                "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}},
            "spec": {"type": "LoadBalancer", "selector": {"app": "llm-8b"},
                     "ports": [{"port": 443, "targetPort": 8443}]}}, "llm/llm-8b-svc"),
        r("kubernetes:networking.k8s.io/v1:NetworkPolicy", "llm-8b", {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "llm-8b"},
            "spec": {"podSelector": {"matchLabels": {"app": "llm-8b"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"ipBlock": {"cidr": "10.40.0.0/16"}}], "ports": [{"port": 8443}]}]}},
          "llm/llm-8b-netpol"),
    ]


SM_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.33.0-lmi15.0.0-cu128@sha256:" + "f" * 64
SM_ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCT}:endpoint/llm-8b"


def sagemaker_stack() -> list[dict]:
    """The model on a SageMaker real-time endpoint (LMI container, vLLM engine), two instances, its volumes on
    the CMK, alarms on the endpoint, a REST API in front that requires IAM-signed requests."""
    return shared() + [
        r("aws:iam/role:Role", "sm-exec", {"assumeRolePolicy": json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "sagemaker.amazonaws.com"}}]})},
          "sm-exec", arn=f"arn:aws:iam::{ACCT}:role/sm-exec"),
        r("aws:sagemaker/model:Model", "llm-8b", {
            "executionRoleArn": f"arn:aws:iam::{ACCT}:role/sm-exec",
            "primaryContainer": {"image": SM_IMAGE, "environment": {
                "HF_MODEL_ID": "meta-llama/Llama-3.1-8B-Instruct", "HF_MODEL_REVISION": COMMIT,
                "OPTION_ROLLING_BATCH": "vllm", "OPTION_TENSOR_PARALLEL_DEGREE": "1",
                "OPTION_GPU_MEMORY_UTILIZATION": "0.9", "OPTION_MAX_MODEL_LEN": "8192"}},
            "tags": dict(PROVENANCE_TAGS)}, "llm-8b-model", name="llm-8b-model"),
        r("aws:sagemaker/endpointConfiguration:EndpointConfiguration", "llm-8b", {
            "kmsKeyArn": KEY_ARN,
            "productionVariants": [{"variantName": "primary", "modelName": "llm-8b-model", "initialInstanceCount": 2,
                                    "instanceType": "ml.g5.xlarge", "initialVariantWeight": 1}]},
          "llm-8b-config", name="llm-8b-config"),
        r("aws:sagemaker/endpoint:Endpoint", "llm-8b", {"endpointConfigName": "llm-8b-config"}, "llm-8b",
          name="llm-8b", arn=SM_ENDPOINT_ARN),
        r("aws:cloudwatch/metricAlarm:MetricAlarm", "sm-latency", {
            "namespace": "AWS/SageMaker", "metricName": "ModelLatency", "statistic": "Average", "threshold": 5e6,
            "comparisonOperator": "GreaterThanThreshold", "evaluationPeriods": 3, "period": 60,
            "dimensions": {"EndpointName": "llm-8b", "VariantName": "primary"}, "alarmActions": [TOPIC_ARN]},
          "sm-latency"),
        r("aws:apigateway/restApi:RestApi", "llm-api", {"endpointConfiguration": {"types": "REGIONAL"}}, "a1b2c3",
          rootResourceId="r00t"),
        r("aws:apigateway/resource:Resource", "llm-api", {"restApi": "a1b2c3", "parentId": "r00t",
                                                          "pathPart": "completions"}, "res1"),
        r("aws:apigateway/method:Method", "llm-api", {"restApi": "a1b2c3", "resourceId": "res1", "httpMethod": "POST",
                                                      "authorization": "AWS_IAM"}, "meth1"),
        r("aws:apigateway/stage:Stage", "llm-api", {"restApi": "a1b2c3", "stageName": "prod",
                                                    "deployment": "dep1"}, "ags-a1b2c3-prod"),
        r("aws:apigateway/methodSettings:MethodSettings", "llm-api", {
            "restApi": "a1b2c3", "stageName": "prod", "methodPath": "*/*",
            "settings": {"throttlingRateLimit": 10, "throttlingBurstLimit": 20}}, "a1b2c3-prod-*/*"),
        r("aws:apigateway/integration:Integration", "llm-api", {
            "restApi": "a1b2c3", "resourceId": "res1", "httpMethod": "POST", "type": "AWS",
            "integrationHttpMethod": "POST",
            "uri": f"arn:aws:apigateway:{REGION}:runtime.sagemaker:path/endpoints/llm-8b/invocations"}, "int1"),
    ]


STACKS = {"ec2": ec2_stack, "ecs": ecs_stack, "k8s": k8s_stack, "sagemaker": sagemaker_stack}


def to_resources(stack: list[dict]) -> list[Resource]:
    """Views as the rules see them (outputs overlaid by inputs; secrets and unknowns normalised)."""
    from llm_platform.policies.core import normalize
    out = []
    for x in stack:
        props = normalize({**x["outputs"], **x["inputs"]})
        out.append(Resource(type=x["type"], name=x["name"], props=props, id=x["id"],
                            urn=f"urn:pulumi:prod::llm::{x['type']}::{x['name']}", protect=True))
    return out


def clone(stack: list[dict]) -> list[dict]:
    return copy.deepcopy(stack)


def find(stack: list[dict], name: str, type_part: str = "") -> dict:
    hits = [x for x in stack if x["name"] == name and type_part in x["type"]]
    if len(hits) != 1:
        raise KeyError(f"{len(hits)} resources named {name!r} ({type_part})")
    return hits[0]


DELETE = object()


def set_path(obj: Any, path: str, value: Any) -> None:
    """set_path(inputs, "metadataOptions.httpTokens", "optional"); lists by [i]; DELETE removes."""
    import re
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    cur = obj
    for p in parts[:-1]:
        cur = cur[int(p[1:-1])] if p.startswith("[") else cur.setdefault(p, {})
    last = parts[-1]
    if last.startswith("["):
        cur[int(last[1:-1])] = value
    elif value is DELETE:
        cur.pop(last, None)
    else:
        cur[last] = value


def mutate(stack: list[dict], changes: dict) -> list[dict]:
    """A copy with changes {"<name>[:<type part>].<path>": value}; "<name>!" removes the resource,
    "+": a list of resources to add."""
    out = clone(stack)
    for key, value in changes.items():
        if key == "+":
            out.extend(copy.deepcopy(value))
            continue
        target, _, path = key.partition(".")
        name, _, tpart = target.partition(":")
        if name.endswith("!"):
            victim = find(out, name[:-1], tpart)
            out = [x for x in out if x is not victim]
            continue
        set_path(find(out, name, tpart)["inputs"], path, value)
    return out
