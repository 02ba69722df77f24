"""Every rule, one at a time: a compliant baseline, single-property mutations that pass and that fail,
a value unknown during preview, and explicit config. Mutations use the baselines of
tests/policies_baseline.py (EC2, ECS, EKS programs); `"@stack": "k8s"` picks another baseline,
`"protect:<name>": False` clears a resource's protect flag."""
import json

import pytest

from llm_platform.policies.core import UNKNOWN, Stack
from llm_platform.policies.rules import ALL, BY_NAME
from tests.policies_baseline import (
    COMMIT,
    DELETE,
    LB_ARN,
    PROVENANCE_TAGS,
    STACKS,
    VLLM_ARGS,
    b64,
    mutate,
    to_resources,
    user_data,
)

LT = "llm-8b:launchTemplate"
DEP = "llm-8b:Deployment.spec.template.spec"
VLLM = DEP + ".containers[0]"
PROXY = DEP + ".containers[1]"


def ud(**kw):
    return {f"{LT}.userData": b64(user_data(**kw))}


def args(old, new):
    return ud(vllm_args=VLLM_ARGS.replace(old, new))


def plus(type_, name, inputs, id_=None, **outputs):
    return {"type": type_, "name": name, "id": id_ or f"{name}-id", "inputs": inputs, "outputs": outputs}


def sg_rule(name, **inputs):
    return plus("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", name,
                dict({"securityGroupId": "sg-0ins", "ipProtocol": "tcp"}, **inputs))


def ecs_vllm(**changes):
    """The ECS baseline's containerDefinitions (a JSON string) with the vLLM container changed."""
    task = next(x for x in STACKS["ecs"]() if x["name"] == "llm-8b-task")
    defs = json.loads(task["inputs"]["containerDefinitions"])
    defs[0].update(changes)
    return {"@stack": "ecs", "llm-8b-task.containerDefinitions": json.dumps(defs)}


KEY_LINK = "aws:apigateway/usagePlanKey:UsagePlanKey"
HTTP_STAGE = "aws:apigatewayv2/stage:Stage"


def usage_plan(**throttle):
    inputs = {"apiStages": [{"apiId": "a1b2c3", "stage": "prod"}]}
    if throttle:
        inputs["throttleSettings"] = throttle
    return plus("aws:apigateway/usagePlan:UsagePlan", "plan", inputs, "up1")


def http_api(auth):
    return [plus("aws:apigatewayv2/api:Api", "chat-api", {"protocolType": "HTTP"}, "h77p"),
            route("chat", authorizationType=auth, authorizerId="au1")]


def fn_url(name, auth):
    return plus("aws:lambda/functionUrl:FunctionUrl", name, {"functionName": "llm-proxy", "authorizationType": auth})


def route(name, key="POST /v1/chat/completions", **kw):
    return plus("aws:apigatewayv2/route:Route", name, dict({"apiId": "h77p", "routeKey": key}, **kw))


ALB_INGRESS = plus("kubernetes:networking.k8s.io/v1:Ingress", "llm-alb", {
    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
    "metadata": {"name": "llm-alb", "annotations": {
        "kubernetes.io/ingress.class": "alb", "alb.ingress.kubernetes.io/scheme": "internal",
        "alb.ingress.kubernetes.io/certificate-arn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
        "alb.ingress.kubernetes.io/ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06"}},
    "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": "llm-8b", "port": {"number": 443}}}}]}}]}})
ALB_ANN = "llm-alb.metadata.annotations"
OLLAMA_INSTALL = ("#!/bin/bash\ncurl -fsSL https://ollama.com/install.sh | sh\n"
                  "mkdir -p /etc/systemd/system/ollama.service.d\n"
                  "cat <<EOF > /etc/systemd/system/ollama.service.d/override.conf\n[Service]\n"
                  "Environment=\"OLLAMA_HOST={host}\"\nEOF\n"
                  "systemctl daemon-reload\nsystemctl restart ollama\nollama pull {model}\n")
SMM = "llm-8b:sagemaker/model.primaryContainer.environment."
SMC = "llm-8b:endpointConfiguration."
METHOD = "llm-api:apigateway/method:Method."
NETPOL = "llm-8b:NetworkPolicy."
# the allow-list a team configures (the rule judges nothing against a list nobody chose)
ALLOWED = ["meta-llama/Llama-3.1-*", "Qwen/*", "hugging-quants/*", "qwen2.5-coder:*"]
DEFAULT_CONFIG = {"model-allow-list": {"allowedModels": ALLOWED}}
IGW = plus("aws:ec2/internetGateway:InternetGateway", "igw", {"vpcId": "vpc-0a1"}, "igw-0abc")
IGW_ROUTE = plus("aws:ec2/route:Route", "default", {"routeTableId": "rtb-0p1", "destinationCidrBlock": "0.0.0.0/0",
                                                    "gatewayId": "igw-0abc"})
OLLAMA = dict(vllm_args="serve", image="ollama/ollama:0.6.2",
              docker_opts="--gpus all --network host -e OLLAMA_HOST=127.0.0.1:11434")
TGI = dict(image="ghcr.io/huggingface/text-generation-inference:3.0.1", docker_opts="--gpus all --network host")
TGI_ARGS = "--model-id meta-llama/Llama-3.1-8B-Instruct --revision " + COMMIT + " --hostname 127.0.0.1 --port 8000"
RATE = {"name": "rate", "priority": 0, "action": {"block": {}},
        "statement": {"rateBasedStatement": {"limit": 600, "aggregateKeyType": "IP"}}}
SIZE = {"name": "size", "priority": 1, "action": {"block": {}},
        "statement": {"sizeConstraintStatement": {"fieldToMatch": {"body": {}}, "comparisonOperator": "GT",
                                                  "size": 131072}}}
ACL = "api-acl:wafv2/webAcl:"
ALARMS = ("gpu-memory", "latency-p99")


def C(stack="ec2", passing=(), failing=(), unknown=({}, "note"), config=({"environment": "dev"}, {}, "pass")):
    return dict(stack=stack, passing=list(passing), failing=list(failing), unknown=unknown, config=config)


CASES = {
    "no-open-ingress": C(
        passing=[{"alb-from-clients.cidrIpv4": "10.0.0.0/8"},
                 {"alb-from-clients.cidrIpv4": DELETE, "alb-from-clients.referencedSecurityGroupId": "sg-0x"},
                 {"alb-sg:ec2/securityGroup:.ingress": [{"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0,
                                                         "cidrBlocks": ["10.10.0.0/16"]}]}],
        failing=[{"alb-from-clients.cidrIpv4": "0.0.0.0/0"},
                 {"alb-from-clients.cidrIpv4": DELETE, "alb-from-clients.cidrIpv6": "::/0"},
                 {"alb-sg:ec2/securityGroup:.ingress": [{"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0,
                                                         "cidrBlocks": ["0.0.0.0/0"]}]},
                 {"+": [plus("aws:ec2/securityGroupRule:SecurityGroupRule", "legacy", {
                     "type": "ingress", "protocol": "tcp", "fromPort": 443, "toPort": 443,
                     "cidrBlocks": ["0.0.0.0/0"], "securityGroupId": "sg-0alb"})]}],
        unknown=({"alb-from-clients.cidrIpv4": UNKNOWN}, "note"),
        config=({"allowedIngressCidrs": ["10.8.0.0/16"]}, {}, "fail")),
    "no-remote-admin-ports": C(
        passing=[{"+": [sg_rule("https", fromPort=443, toPort=443, cidrIpv4="10.0.0.0/8")]},
                 {"+": [sg_rule("alb-ssh", securityGroupId="sg-0alb", fromPort=22, toPort=22, cidrIpv4="10.0.0.0/8")]},
                 {"+": [sg_rule("nccl", ipProtocol="-1", fromPort=-1, toPort=-1, referencedSecurityGroupId="sg-0ins")]},
                 {"+": [sg_rule("udp22", ipProtocol="udp", fromPort=22, toPort=22, cidrIpv4="10.0.0.0/8")]}],
        failing=[{"+": [sg_rule("ssh", fromPort=22.0, toPort=22.0, cidrIpv4="10.8.0.0/16")]},
                 {"+": [sg_rule("rdp", fromPort=3389, toPort=3389, cidrIpv4="10.8.0.0/16")]},
                 {"+": [sg_rule("all", ipProtocol="-1", cidrIpv4="10.0.0.0/8")]},
                 {"instances-sg:ec2/securityGroup:.ingress": [{"protocol": "tcp", "fromPort": 20, "toPort": 25,
                                                               "securityGroups": ["sg-0alb"]}]}],
        unknown=({"+": [sg_rule("later", fromPort=UNKNOWN, toPort=UNKNOWN, cidrIpv4="10.0.0.0/8")]}, "note"),
        config=({"ports": [8443]}, {}, "fail")),
    "internal-load-balancers": C(
        passing=[{"api:loadBalancer.internal": "true"},
                 {"api:loadBalancer.loadBalancerType": "gateway", "api:loadBalancer.internal": False}],
        failing=[{"api:loadBalancer.internal": False}, {"api:loadBalancer.internal": DELETE},
                 {"api:loadBalancer.internal": "false"},
                 {"@stack": "k8s", "llm-8b:Service.metadata.annotations": {}}],
        unknown=({"api:loadBalancer.internal": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"api:loadBalancer.internal": False}, "fail")),
    "inference-subnets-private": C(
        passing=[{"+": [IGW, plus("aws:ec2/routeTable:RouteTable", "public", {"vpcId": "vpc-0a1"}, "rtb-0pub"),
                        plus("aws:ec2/route:Route", "public-default", {"routeTableId": "rtb-0pub",
                                                                       "destinationCidrBlock": "0.0.0.0/0",
                                                                       "gatewayId": "igw-0abc"})]},
                 {"+": [plus("aws:ec2/route:Route", "nat", {"routeTableId": "rtb-0p1", "natGatewayId": "nat-0a",
                                                            "destinationCidrBlock": "0.0.0.0/0"})]},
                 {"private-a:ec2/subnet.mapPublicIpOnLaunch": "false"}],
        failing=[{"+": [IGW, IGW_ROUTE]},
                 {"private-a:ec2/subnet.mapPublicIpOnLaunch": True},
                 {"private:ec2/routeTable:.routes": [{"cidrBlock": "0.0.0.0/0", "gatewayId": "igw-0abc"}]},
                 {"+": [IGW, plus("aws:ec2/route:Route", "v6", {"routeTableId": "rtb-0p1", "gatewayId": "igw-0abc",
                                                                "destinationIpv6CidrBlock": "::/0"})]}],
        unknown=({"+": [plus("aws:ec2/route:Route", "later", {"routeTableId": "rtb-0p1", "gatewayId": UNKNOWN,
                                                              "destinationCidrBlock": "0.0.0.0/0"})]}, "pass"),
        config=({"environment": "staging"}, {"+": [IGW, IGW_ROUTE]}, "fail")),
    "vpc-flow-logs": C(
        passing=[{"flow-log.trafficType": "REJECT"},
                 {"+": [plus("aws:ec2/vpc:Vpc", "vpc2", {"cidrBlock": "10.1.0.0/16"}, "vpc-2"),
                        plus("aws:ec2/flowLog:FlowLog", "fl2", {"vpcId": "vpc-2", "trafficType": "ALL"})]}],
        failing=[{"flow-log!": None}, {"flow-log.vpcId": "vpc-other"}],
        unknown=({"flow-log.vpcId": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"flow-log!": None}, "fail")),
    "ec2-imdsv2-required": C(
        passing=[{f"{LT}.metadataOptions.httpEndpoint": "disabled", f"{LT}.metadataOptions.httpTokens": "optional"},
                 {f"{LT}.metadataOptions.httpPutResponseHopLimit": 1.0}],
        failing=[{f"{LT}.metadataOptions.httpTokens": "optional"}, {f"{LT}.metadataOptions": DELETE},
                 {f"{LT}.metadataOptions.httpTokens": DELETE}],
        unknown=({f"{LT}.metadataOptions.httpTokens": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {f"{LT}.metadataOptions.httpTokens": "optional"}, "fail")),
    "ebs-volumes-encrypted": C(
        passing=[{f"{LT}.blockDeviceMappings[0].ebs.encrypted": True},
                 {f"{LT}.blockDeviceMappings[0].ebs.encrypted": "TRUE"},
                 {f"{LT}.blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}},
                                                {"deviceName": "/dev/sdb", "virtualName": "ephemeral0"}]}],
        failing=[{f"{LT}.blockDeviceMappings[0].ebs.encrypted": "false"}, {f"{LT}.blockDeviceMappings": DELETE},
                 {f"{LT}.blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}},
                                                {"deviceName": "/dev/sdf", "ebs": {"volumeSize": 500}}]},
                 {"+": [plus("aws:ebs/volume:Volume", "cache", {"availabilityZone": "us-east-1a", "size": 500})]}],
        unknown=({f"{LT}.blockDeviceMappings[0].ebs.encrypted": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {f"{LT}.blockDeviceMappings[0].ebs.encrypted": "false"}, "fail")),
    "no-public-ip": C(
        passing=[{f"{LT}.networkInterfaces[0].associatePublicIpAddress": False},
                 {f"{LT}.networkInterfaces[0].associatePublicIpAddress": DELETE},
                 {"+": [plus("aws:ec2/eip:Eip", "nat", {"domain": "vpc"})]},
                 {"+": [plus("aws:ec2/instance:Instance", "box", {"instanceType": "g5.xlarge",
                                                                  "subnetId": "subnet-0aaa"})]}],
        failing=[{f"{LT}.networkInterfaces[0].associatePublicIpAddress": "true"},
                 {"+": [plus("aws:ec2/instance:Instance", "box", {"instanceType": "g5.xlarge"})]},
                 {f"{LT}.networkInterfaces[0].associatePublicIpAddress": True},
                 {"+": [plus("aws:ec2/instance:Instance", "box", {"instanceType": "g5.xlarge",
                                                                  "associatePublicIpAddress": True})]},
                 {"+": [plus("aws:ec2/eipAssociation:EipAssociation", "eipa", {"instanceId": "i-0abc"})]}],
        unknown=({f"{LT}.networkInterfaces[0].associatePublicIpAddress": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {f"{LT}.networkInterfaces[0].associatePublicIpAddress": "true"}, "fail")),
    "https-listeners": C(
        passing=[{"https.sslPolicy": "ELBSecurityPolicy-TLS13-1-3-2021-06"},
                 {"https.protocol": "TLS", "https.sslPolicy": "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"},
                 {"https.sslPolicy": "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09"},
                 {"@stack": "k8s", "+": [ALB_INGRESS]},
                 {"@stack": "k8s", "llm-8b:Service.spec.ports": [{"port": 443, "targetPort": 8000}],
                  "llm-8b:Service.metadata.annotations": {
                      "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
                      "service.beta.kubernetes.io/aws-load-balancer-ssl-cert":
                          "arn:aws:acm:us-east-1:123456789012:certificate/abc"}}],
        failing=[{"https.sslPolicy": "ELBSecurityPolicy-2016-08"}, {"https.sslPolicy": DELETE},
                 {"http-redirect.defaultActions[0].redirect.protocol": "HTTP"},
                 {"https.sslPolicy": "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06"},
                 {"@stack": "k8s", "+": [ALB_INGRESS], ALB_ANN: {
                     k: v for k, v in ALB_INGRESS["inputs"]["metadata"]["annotations"].items()
                     if "ssl-policy" not in k}},
                 {"@stack": "k8s", "llm-8b:Service.spec.ports": [{"port": 80, "targetPort": 8000}]}],
        unknown=({"https.sslPolicy": UNKNOWN}, "note"),
        config=({"allowedSslPolicies": ["ELBSecurityPolicy-TLS13-1-3-2021-06"]}, {}, "fail")),
    "https-target-groups": C(
        passing=[{"llm-8b:targetGroup.protocol": "TCP"},
                 {"llm-8b:targetGroup.targetType": "lambda", "llm-8b:targetGroup.protocol": DELETE},
                 {"llm-8b:targetGroup.protocol": "https"}],
        failing=[{"llm-8b:targetGroup.protocol": "HTTP"}, {"llm-8b:targetGroup.protocol": "http"},
                 {"llm-8b:targetGroup.protocol": DELETE}],
        unknown=({"llm-8b:targetGroup.protocol": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"llm-8b:targetGroup.protocol": "HTTP"}, "fail")),
    "alb-drop-invalid-headers": C(
        passing=[{"api:loadBalancer.dropInvalidHeaderFields": "true"},
                 {"api:loadBalancer.loadBalancerType": "network", "api:loadBalancer.dropInvalidHeaderFields": False}],
        failing=[{"api:loadBalancer.dropInvalidHeaderFields": False},
                 {"api:loadBalancer.dropInvalidHeaderFields": DELETE}],
        unknown=({"api:loadBalancer.dropInvalidHeaderFields": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"api:loadBalancer.dropInvalidHeaderFields": False}, "fail")),
    "runtime-behind-auth-proxy": C(
        passing=[args("--host 127.0.0.1", "--host localhost"),
                 ud(vllm_args=VLLM_ARGS.replace("127.0.0.1", "0.0.0.0"), docker_opts="--gpus all"),
                 ud(vllm_args=VLLM_ARGS.replace("127.0.0.1", "0.0.0.0"),
                    docker_opts="--gpus all -p 127.0.0.1:8000:8000"),
                 {f"{LT}.userData": b64(OLLAMA_INSTALL.format(host="127.0.0.1:11434", model="llama3.1:8b"))},
                 {"@stack": "sagemaker"},
                 # awsvpc: a port mapping names the task ENI's port, the loopback bind keeps vLLM private
                 ecs_vllm(portMappings=[{"containerPort": 8000, "hostPort": 8000}])],
        failing=[args("--host 127.0.0.1", "--host 0.0.0.0"),
                 ud(docker_opts="--gpus all -p 8000:8000"),
                 ud(extra="OLLAMA_HOST=0.0.0.0 ollama serve &"),
                 ud(extra="cat > /etc/nginx/conf.d/open.conf <<'EOF'\nserver { listen 8080; location / { "
                          "proxy_pass http://127.0.0.1:8000; } }\nEOF"),
                 {f"{LT}.userData": b64(OLLAMA_INSTALL.format(host="0.0.0.0:11434", model="llama3.1:8b"))},
                 {"@stack": "k8s", VLLM + ".args[5]": "0.0.0.0"}],
        unknown=({f"{LT}.userData": UNKNOWN}, "note"),
        config=({"environment": "dev"}, args("--host 127.0.0.1", "--host 0.0.0.0"), "fail")),
    "gpu-memory-utilization": C(
        passing=[args("0.90", "0.95"), args("--gpu-memory-utilization 0.90", ""), args("0.90", "0.5")],
        failing=[args("0.90", "0.99"), args("0.90", "0.96"),
                 ud(vllm_args=TGI_ARGS + " --cuda-memory-fraction 0.99", **TGI)],
        unknown=(args("0.90", "$GPU_UTIL"), "note"),
        config=({"max": 0.85}, {}, "fail")),
    "no-trust-remote-code": C(
        passing=[{}, ud(vllm_args=VLLM_ARGS.replace("meta-llama/Llama-3.1-8B-Instruct",
                                                   "nomic-ai/nomic-embed-text-v1.5")
                        + " --trust-remote-code")],
        failing=[ud(vllm_args=VLLM_ARGS + " --trust-remote-code"),
                 ud(vllm_args=TGI_ARGS, image=TGI["image"], docker_opts="--gpus all --network host "
                    "-e TRUST_REMOTE_CODE=true"),
                 ud(vllm_args="--model /opt/model --trust-remote-code --host 127.0.0.1")],
        unknown=({f"{LT}.userData": UNKNOWN}, "note"),
        config=({"allowRemoteCodeFor": ["meta-llama/*"]}, ud(vllm_args=VLLM_ARGS + " --trust-remote-code"), "pass")),
    "prod-runtime-vllm-or-tgi": C(
        passing=[{}, ud(vllm_args=TGI_ARGS, **TGI)],
        failing=[ud(**OLLAMA), ud(extra="OLLAMA_HOST=127.0.0.1 ollama serve &"),
                 ud(extra="llama-server -m /opt/model/model.gguf --host 127.0.0.1 &")],
        unknown=({f"{LT}.userData": UNKNOWN}, "note"),
        config=({"environment": "dev"}, ud(**OLLAMA), "pass")),
    "no-cpu-inference-in-prod": C(
        passing=[{f"{LT}.instanceType": "g6e.xlarge"}, {f"{LT}.instanceType": "inf2.xlarge"},
                 {f"{LT}.instanceType": "p5.48xlarge"}],
        failing=[{"@stack": "sagemaker", SMC + "productionVariants[0].instanceType": "ml.m5.xlarge"},
                 {f"{LT}.instanceType": "m7i.4xlarge"}, ud(docker_opts="--network host"),
                 ud(docker_opts="--gpus all --network host -e CUDA_VISIBLE_DEVICES="),
                 args("--max-num-seqs 16", "--max-num-seqs 16 --device cpu")],
        unknown=({f"{LT}.instanceType": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {f"{LT}.instanceType": "m7i.4xlarge"}, "pass")),
    "waf-on-inference-lb": C(
        passing=[{}, {"api-acl!:webAclAssociation": None, "+": [plus(
            "aws:wafregional/webAclAssociation:WebAclAssociation", "classic",
            {"resourceArn": LB_ARN,
             "webAclId": "abc"})]}],
        failing=[{"api-acl!:webAclAssociation": None},
                 {"api-acl:webAclAssociation.resourceArn":
                      "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/x/1"},
                 {"api-acl!:webAclAssociation": None, "api:loadBalancer.loadBalancerType": "network"}],
        unknown=({"api-acl:webAclAssociation.resourceArn": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"api-acl!:webAclAssociation": None}, "fail")),
    "waf-rate-and-size-limits": C(
        passing=[{ACL + ".rules": [RATE, {"name": "cl", "action": {"block": {}}, "statement": {
            "sizeConstraintStatement": {"fieldToMatch": {"singleHeader": {"name": "content-length"}},
                                        "comparisonOperator": "GT", "size": 6.0}}}]},
                 {ACL + ".rules": [RATE, {"name": "common", "overrideAction": {"none": {}}, "statement": {
                     "managedRuleGroupStatement": {"vendorName": "AWS", "name": "AWSManagedRulesCommonRuleSet"}}}]},
                 {ACL + ".rules": DELETE, ACL + ".ruleJson":
                     '[{"Name":"r","Action":{"Block":{}},"Statement":{"RateBasedStatement":{"Limit":600}}},'
                     '{"Name":"s","Action":{"Block":{}},"Statement":{"SizeConstraintStatement":'
                     '{"FieldToMatch":{"Body":{}},"ComparisonOperator":"GT","Size":131072}}}]'}],
        failing=[{ACL + ".rules": [SIZE]}, {ACL + ".rules": [dict(RATE, action={"count": {}}), SIZE]},
                 {ACL + ".rules": [RATE]},
                 {ACL + ".rules": [RATE, {"name": "common", "overrideAction": {"none": {}}, "statement": {
                     "managedRuleGroupStatement": {"vendorName": "AWS", "name": "AWSManagedRulesCommonRuleSet",
                                                   "ruleActionOverrides": [{"name": "SizeRestrictions_BODY",
                                                                            "actionToUse": {"count": {}}}]}}}]}],
        unknown=({ACL + ".rules": UNKNOWN}, "note"),
        config=({"maxRequestsPer5Min": 100}, {}, "fail")),
    "log-group-retention": C(
        passing=[{"runtime-logs.retentionInDays": 30.0}, {"runtime-logs.retentionInDays": "3653"}],
        failing=[{"runtime-logs.retentionInDays": DELETE}, {"runtime-logs.retentionInDays": 0}],
        unknown=({"runtime-logs.retentionInDays": UNKNOWN}, "note"),
        config=({"maxRetentionDays": 60}, {}, "fail")),
    "log-group-kms": C(
        passing=[{"runtime-logs.kmsKeyId": "arn:aws:kms:us-east-1:1:alias/logs"}],
        failing=[{"runtime-logs.kmsKeyId": DELETE}, {"runtime-logs.kmsKeyId": ""}],
        unknown=({"runtime-logs.kmsKeyId": UNKNOWN}, "pass"),
        config=({"environment": "dev"}, {"runtime-logs.kmsKeyId": DELETE}, "fail")),
    "no-request-logging": C(
        passing=[args("--max-num-seqs 16", "--max-num-seqs 16 --disable-log-requests"),
                 ud(vllm_args="serve", image="ollama/ollama:0.6.2",
                    docker_opts="--gpus all --network host -e OLLAMA_HOST=127.0.0.1 -e OLLAMA_DEBUG=0")],
        failing=[args("--max-num-seqs 16", "--max-num-seqs 16 --enable-log-requests"),
                 args("--max-num-seqs 16", "--max-num-seqs 16 --enable-log-outputs"),
                 ud(vllm_args="serve", image="ollama/ollama:0.6.2",
                    docker_opts="--gpus all --network host -e OLLAMA_HOST=127.0.0.1 -e OLLAMA_DEBUG=1"),
                 ud(extra="echo \"log_format full '$remote_addr $request_body';\" > /etc/nginx/conf.d/log.conf")],
        unknown=({f"{LT}.userData": UNKNOWN}, "note"),
        config=({"environment": "dev"}, args("--max-num-seqs 16", "--max-num-seqs 16 --enable-log-requests"), "fail")),
    "no-secret-literals": C(
        passing=[ud(extra="API_KEY=$(aws secretsmanager get-secret-value --secret-id k --query SecretString)"),
                 ud(extra="export HF_HUB_OFFLINE=1 HF_TOKEN_PATH=/run/hf"), {"@stack": "ecs"}],
        failing=[ud(extra="export HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
                 ud(extra="export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE"),
                 ud(extra="echo '-----BEGIN RSA PRIVATE KEY-----' > /etc/k"),
                 args("--max-num-seqs 16", "--max-num-seqs 16 --api-key sk-live-0123456789abcdefghijklmn"),
                 {"@stack": "k8s", VLLM + ".env": [{"name": "DB_PASSWORD", "value": "correct-horse-battery"}]}],
        unknown=({f"{LT}.userData": UNKNOWN}, "note"),
        config=({"environment": "dev"}, ud(extra="export HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"), "fail")),
    "kms-key-rotation": C(
        passing=[{"cmk.enableKeyRotation": "true"},
                 {"cmk.enableKeyRotation": DELETE, "cmk.customerMasterKeySpec": "RSA_2048",
                  "cmk.keyUsage": "SIGN_VERIFY"}],
        failing=[{"cmk.enableKeyRotation": False}, {"cmk.enableKeyRotation": DELETE}],
        unknown=({"cmk.enableKeyRotation": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"cmk.enableKeyRotation": False}, "fail")),
    "secrets-on-cmk": C(
        passing=[{"api-keys:secret:Secret.kmsKeyId": "1234abcd"}],
        failing=[{"api-keys:secret:Secret.kmsKeyId": DELETE},
                 {"api-keys:secret:Secret.kmsKeyId": "alias/aws/secretsmanager"}],
        unknown=({"api-keys:secret:Secret.kmsKeyId": UNKNOWN}, "pass"),
        config=({"environment": "dev"}, {"api-keys:secret:Secret.kmsKeyId": DELETE}, "fail")),
    "secrets-rotation": C(
        passing=[{"api-keys!:secretRotation": None, "api-keys:secret:Secret.rotationRules":
                  {"automaticallyAfterDays": 30}}],
        failing=[{"api-keys!:secretRotation": None}, {"api-keys:secretRotation.secretId": "arn:other"}],
        unknown=({"api-keys:secretRotation.secretId": UNKNOWN}, "note"),
        config=({"environment": "prod"}, {"api-keys!:secretRotation": None}, "fail")),
    "s3-bucket-not-public": C(
        passing=[{"models:s3/bucket:.acl": "private"}, {"models:bucketPublicAccessBlock.blockPublicAcls": "true"}],
        failing=[{"models:s3/bucket:.acl": "public-read"},
                 {"models:bucketPolicy.policy":
                      '{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}]}'},
                 {"models:bucketPublicAccessBlock.blockPublicPolicy": False},
                 {"+": [plus("aws:s3/bucketAcl:BucketAcl", "acl",
                             {"bucket": "llm-models", "acl": "public-read-write"})]}],
        unknown=({"models:bucketPolicy.policy": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"models:s3/bucket:.acl": "public-read"}, "fail")),
    "s3-bucket-kms-encryption": C(
        passing=[{"models!:ServerSideEncryption": None, "models:s3/bucket:.serverSideEncryptionConfiguration":
                  {"rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}}},
                 {"api:loadBalancer.accessLogs": {"bucket": "llm-models", "enabled": True},
                  "models:ServerSideEncryption.rules[0].applyServerSideEncryptionByDefault.sseAlgorithm": "AES256"}],
        failing=[{"models:ServerSideEncryption.rules[0].applyServerSideEncryptionByDefault.sseAlgorithm": "AES256"},
                 {"models!:ServerSideEncryption": None}],
        unknown=({"models:ServerSideEncryption.rules[0].applyServerSideEncryptionByDefault.sseAlgorithm": UNKNOWN},
                 "pass"),
        config=({"environment": "prod"}, {"models!:ServerSideEncryption": None}, "fail")),
    "s3-public-access-block": C(
        passing=[{"models!:bucketPublicAccessBlock": None, "+": [plus(
            "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock", "account", {
                "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
                "restrictPublicBuckets": True})]}],
        failing=[{"models!:bucketPublicAccessBlock": None}, {"models:bucketPublicAccessBlock.ignorePublicAcls": False}],
        unknown=({"models:bucketPublicAccessBlock.bucket": UNKNOWN}, "pass"),
        config=({"environment": "dev"}, {"models!:bucketPublicAccessBlock": None}, "fail")),
    "model-allow-list": C(
        passing=[args("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-Coder-7B-Instruct"),
                 args("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
                 args("meta-llama/Llama-3.1-8B-Instruct", "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"),
                 ud(vllm_args="serve", image="ollama/ollama:0.6.2", docker_opts="--gpus all --network host",
                    extra="ollama pull qwen2.5-coder:7b-instruct-q4_K_M")],
        failing=[args("meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"),
                 args("--model meta-llama/Llama-3.1-8B-Instruct", "--model /opt/model") |
                 {f"{LT}.tags.llm-platform:model": DELETE},
                 ud(vllm_args="--model-id bigscience/bloom-560m --hostname 127.0.0.1", **dict(TGI))],
        unknown=(args("--model meta-llama/Llama-3.1-8B-Instruct", "--model /opt/model") |
                 {f"{LT}.tags.llm-platform:model": UNKNOWN}, "note"),
        config=({"allowedModels": ["mistralai/*"]}, {}, "fail")),
    "model-revision-pinned": C(
        passing=[args(COMMIT, "sha256:" + "b" * 64),
                 args("--model meta-llama/Llama-3.1-8B-Instruct --revision " + COMMIT, "--model /opt/models/" + COMMIT),
                 args("--revision " + COMMIT, "") | {f"{LT}.tags.llm-platform:revision": COMMIT}],
        failing=[args(COMMIT, "main"),
                 args("--revision " + COMMIT, "") | {f"{LT}.tags.llm-platform:revision": DELETE},
                 args(COMMIT, "v1.0"),
                 {f"{LT}.userData": b64(OLLAMA_INSTALL.format(host="127.0.0.1", model="llama3.1:latest"))},
                 {"@stack": "sagemaker", SMM + "HF_MODEL_REVISION": DELETE,
                  "llm-8b:sagemaker/model.tags": {k: v for k, v in PROVENANCE_TAGS.items() if "revision" not in k}}],
        unknown=(args("--revision " + COMMIT, "") | {f"{LT}.tags.llm-platform:revision": UNKNOWN}, "note"),
        config=({"environment": "staging"}, args(COMMIT, "main"), "fail")),
    "model-checksum-verified": C(
        passing=[ud(verify=False), {f"{LT}.tags.llm-platform:checksum": DELETE}],
        failing=[ud(verify=False) | {f"{LT}.tags.llm-platform:checksum": DELETE},
                 ud(verify=False) | {f"{LT}.tags.llm-platform:checksum": "none"}],
        unknown=(ud(verify=False) | {f"{LT}.tags.llm-platform:checksum": UNKNOWN}, "note"),
        config=({"environment": "dev"}, ud(verify=False) | {f"{LT}.tags.llm-platform:checksum": DELETE}, "fail")),
    "model-provenance-approved": C(
        passing=[{f"{LT}.tags.llm-platform:provenance-review-status": DELETE},
                 {"@stack": "ecs"}, {"@stack": "k8s"}],
        failing=[{f"{LT}.tags.llm-platform:provenance-review-status": "pending"},
                 {f"{LT}.tags.llm-platform:provenance-source": DELETE},
                 {f"{LT}.tags.llm-platform:provenance-review-status": DELETE,
                  f"{LT}.tags.llm-platform:provenance-approved-by": DELETE}],
        unknown=({f"{LT}.tags.llm-platform:provenance-review-status": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {f"{LT}.tags.llm-platform:provenance-review-status": "pending"}, "fail")),
    "model-fits-gpu": C(
        passing=[{f"{LT}.instanceType": "g6e.xlarge"},
                 ud(vllm_args="serve", image="ollama/ollama:0.6.2",
                    docker_opts="--gpus all --network host -e OLLAMA_HOST=127.0.0.1 -e OLLAMA_CONTEXT_LENGTH=8192")
                 | {f"{LT}.instanceType": "g4dn.xlarge"},
                 args("--tensor-parallel-size 1", "--tensor-parallel-size 4") | {f"{LT}.instanceType": "g5.12xlarge"}],
        failing=[{f"{LT}.instanceType": "g4dn.xlarge"}, args("--tensor-parallel-size 1", "--tensor-parallel-size 4"),
                 args("Llama-3.1-8B-Instruct", "Llama-3.1-70B-Instruct"),
                 args("--tensor-parallel-size 1", "--tensor-parallel-size 3") | {f"{LT}.instanceType": "g5.12xlarge"},
                 args("--max-num-seqs 16", "--max-num-seqs 16 --quantization fp8")
                 | {f"{LT}.instanceType": "g4dn.xlarge"}],
        unknown=({f"{LT}.instanceType": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {f"{LT}.instanceType": "g4dn.xlarge"}, "fail")),
    "inference-alarms": C(
        passing=[{"latency-p99!": None},
                 {"gpu-memory.dimensions": DELETE, "latency-p99!": None}],
        failing=[{"gpu-memory!": None, "latency-p99!": None}, {"@stack": "sagemaker", "sm-latency!": None},
                 {"gpu-memory.alarmActions": [], "latency-p99.alarmActions": []},
                 {"gpu-memory.actionsEnabled": False, "latency-p99.actionsEnabled": "false"}],
        unknown=({"gpu-memory.alarmActions": [UNKNOWN], "latency-p99.alarmActions": [UNKNOWN]}, "note"),
        config=({"environment": "dev"}, {"gpu-memory!": None, "latency-p99!": None}, "fail")),
    "sns-topic-encrypted": C(
        passing=[{"alarms:sns/topic.kmsMasterKeyId": "alias/aws/sns"}],
        failing=[{"alarms:sns/topic.kmsMasterKeyId": DELETE}, {"alarms:sns/topic.kmsMasterKeyId": ""}],
        unknown=({"alarms:sns/topic.kmsMasterKeyId": UNKNOWN}, "pass"),
        config=({"environment": "dev"}, {"alarms:sns/topic.kmsMasterKeyId": DELETE}, "fail")),
    "eks-private-endpoint": C(
        "k8s",
        passing=[{"llm:eks/cluster.vpcConfig.endpointPrivateAccess": "true"}],
        failing=[{"llm:eks/cluster.vpcConfig.endpointPublicAccess": True},
                 {"llm:eks/cluster.vpcConfig.endpointPublicAccess": DELETE},
                 {"llm:eks/cluster.vpcConfig.endpointPrivateAccess": False}],
        unknown=({"llm:eks/cluster.vpcConfig.endpointPublicAccess": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"llm:eks/cluster.vpcConfig.endpointPublicAccess": True}, "fail")),
    "eks-secrets-encrypted": C(
        "k8s",
        passing=[{"llm:eks/cluster.encryptionConfig": [{"provider": {"keyArn": "arn:k"}, "resources": ["secrets"]}]}],
        failing=[{"llm:eks/cluster.encryptionConfig": DELETE}, {"llm:eks/cluster.encryptionConfig.resources": []},
                 {"llm:eks/cluster.encryptionConfig.provider": DELETE}],
        unknown=({"llm:eks/cluster.encryptionConfig": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"llm:eks/cluster.encryptionConfig": DELETE}, "fail")),
    "k8s-run-as-non-root": C(
        "k8s",
        passing=[{VLLM + ".securityContext.runAsNonRoot": DELETE, DEP + ".securityContext": DELETE},
                 {DEP + ".securityContext.runAsNonRoot": DELETE}],
        failing=[{VLLM + ".securityContext.runAsUser": 0},
                 {VLLM + ".securityContext.runAsNonRoot": DELETE, VLLM + ".securityContext.runAsUser": DELETE,
                  DEP + ".securityContext": DELETE}],
        unknown=({VLLM + ".securityContext.runAsNonRoot": UNKNOWN, VLLM + ".securityContext.runAsUser": DELETE},
                 "note"),
        config=({"environment": "dev"}, {VLLM + ".securityContext.runAsUser": 0}, "fail")),
    "k8s-no-privilege-escalation": C(
        "k8s",
        passing=[{VLLM + ".securityContext.allowPrivilegeEscalation": "false"}],
        failing=[{VLLM + ".securityContext.allowPrivilegeEscalation": True},
                 {PROXY + ".securityContext.allowPrivilegeEscalation": DELETE},
                 {VLLM + ".securityContext.privileged": True}],
        unknown=({VLLM + ".securityContext.allowPrivilegeEscalation": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {VLLM + ".securityContext.privileged": True}, "fail")),
    "k8s-read-only-root-filesystem": C(
        "k8s",
        passing=[{VLLM + ".securityContext.readOnlyRootFilesystem": "true"}],
        failing=[{VLLM + ".securityContext.readOnlyRootFilesystem": False},
                 {PROXY + ".securityContext.readOnlyRootFilesystem": DELETE}],
        unknown=({VLLM + ".securityContext.readOnlyRootFilesystem": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {VLLM + ".securityContext.readOnlyRootFilesystem": False}, "fail")),
    "container-image-pinned": C(
        "k8s",
        passing=[{VLLM + ".image": "vllm/vllm-openai@sha256:" + "1" * 64},
                 {"+": [plus("kubernetes:batch/v1:Job", "warm-cache", {"spec": {"template": {"spec": {"containers": [
                     {"name": "pull", "image": "vllm/vllm-openai:v0.9.2", "command": ["/bin/sh", "-c", "true"]}]}}}})]},
                 {VLLM + ".image": "registry:5000/vllm:v1@sha256:" + "2" * 64}, {"@stack": "ecs"},
                 {"@stack": "sagemaker"}],
        failing=[{VLLM + ".image": "vllm/vllm-openai:latest"}, {VLLM + ".image": "registry:5000/vllm"},
                 {VLLM + ".image": "vllm/vllm-openai:v0.9.2"},
                 {VLLM + ".image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/vllm:arm64"},
                 {PROXY + ".image": "ghcr.io/open-webui/open-webui:main"},
                 {"@stack": "ec2"} | ud(image="vllm/vllm-openai")],
        unknown=({VLLM + ".image": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {VLLM + ".image": "vllm/vllm-openai:v0.9.2"}, "pass")),
    "k8s-gpu-limits": C(
        "k8s",
        passing=[{VLLM + ".resources": {"limits": {"nvidia.com/gpu": "2"}}},
                 {VLLM + ".resources": {"limits": {"cpu": "4"}},
                  VLLM + ".image": "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.8.5.post1@sha256:" + "9" * 64},
                 {VLLM + ".resources": {"requests": {"cpu": "24"}},
                  DEP + ".nodeSelector": {"karpenter.k8s.aws/instance-family": "m8g"}}],
        failing=[{VLLM + ".resources": {"requests": {"nvidia.com/gpu": "1"}}},
                 {VLLM + ".resources": {"limits": {"cpu": "4"}},
                  DEP + ".nodeSelector": {"karpenter.k8s.aws/instance-family": "g6e"}},
                 {VLLM + ".resources": {"limits": {"memory": "24Gi"}}},
                 {VLLM + ".resources": {"limits": {"nvidia.com/gpu": "0"}}}],
        unknown=({VLLM + ".resources.limits": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {VLLM + ".resources": {"limits": {"memory": "24Gi"}}}, "fail")),
    "k8s-probes": C(
        "k8s",
        passing=[{VLLM + ".startupProbe": {"httpGet": {"path": "/health", "port": 8443}}}],
        failing=[{VLLM + ".readinessProbe": DELETE}, {PROXY + ".livenessProbe": DELETE}],
        unknown=({DEP: UNKNOWN}, "note"),
        config=({"environment": "dev"}, {VLLM + ".readinessProbe": DELETE}, "fail")),
    "prod-multi-az": C(
        passing=[{"llm-8b:group:Group.minSize": 3.0},
                 {"llm-8b:group:Group.vpcZoneIdentifiers": ["subnet-0aaa", "subnet-0bbb", "subnet-0ccc"]}],
        failing=[{"llm-8b:group:Group.minSize": 1.0},
                 {"private-b:ec2/subnet.availabilityZone": "us-east-1a"},
                 {"llm-8b:group:Group.vpcZoneIdentifiers": ["subnet-0aaa"]},
                 {"@stack": "k8s", "llm-8b:Deployment.spec.replicas": 1},
                 {"@stack": "sagemaker", SMC + "productionVariants[0].initialInstanceCount": 1}],
        unknown=({"llm-8b:group:Group.minSize": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"llm-8b:group:Group.minSize": 1.0}, "pass")),
    "server-install-pinned": C(
        passing=[ud(extra="pip install 'vllm==0.9.2'"),
                 ud(extra="curl -fsSL -o /tmp/ollama.sh https://ollama.com/install.sh && "
                          "echo \"$OLLAMA_SHA256  /tmp/ollama.sh\" | sha256sum -c - && sh /tmp/ollama.sh"),
                 ud(extra="python3 -m pip install --no-deps vllm===0.9.2 requests")],
        failing=[ud(extra="pip install vllm"), ud(extra="curl -fsSL https://ollama.com/install.sh | sh"),
                 ud(extra="pip3 install -U 'vllm>=0.9'"),
                 ud(extra="wget -qO- https://example.com/setup.sh | sudo bash"),
                 ud(extra="uv pip install --system vllm[audio]")],
        unknown=({f"{LT}.userData": UNKNOWN}, "note"),
        config=({"environment": "dev"}, ud(extra="pip install vllm"), "fail")),
    "inference-api-authenticated": C(
        "sagemaker",
        passing=[{METHOD + "authorization": "NONE", METHOD + "apiKeyRequired": True},
                 {METHOD + "authorization": "NONE", METHOD + "httpMethod": "OPTIONS"},
                 {"+": [fn_url("proxy-url", "AWS_IAM"), route("chat", authorizationType="JWT", authorizerId="au1")]},
                 {METHOD + "authorization": "NONE", "llm-api:restApi.endpointConfiguration": {"types": "PRIVATE"}},
                 {"@stack": "ec2", "+": [route("other", authorizationType="JWT")]}],
        failing=[{METHOD + "authorization": "NONE"},
                 {METHOD + "authorization": "none", METHOD + "apiKeyRequired": False},
                 {"+": [fn_url("proxy-url", "NONE")]}, {"+": [route("chat", authorizationType="NONE")]},
                 {"+": [route("chat")]}, {"@stack": "ec2", "+": [fn_url("proxy-url", "NONE")]}],
        unknown=({METHOD + "authorization": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {METHOD + "authorization": "NONE"}, "fail")),
    "inference-api-rate-limited": C(
        "sagemaker",
        passing=[{"llm-api!:methodSettings": None, "+": [plus(
                     "aws:wafv2/webAclAssociation:WebAclAssociation", "api-waf", {
                     "resourceArn": "arn:aws:apigateway:us-east-1::/restapis/a1b2c3/stages/prod",
                     "webAclArn": "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/llm/1"})]},
                 {"llm-api!:methodSettings": None, METHOD + "apiKeyRequired": True,
                  "+": [usage_plan(rateLimit=5), plus(KEY_LINK, "k", {"keyId": "key1", "usagePlanId": "up1"})]},
                 {"+": http_api("JWT") + [plus(HTTP_STAGE, "h", {
                     "apiId": "h77p", "name": "$default", "defaultRouteSettings": {"throttlingRateLimit": 5}})]}],
        failing=[{"llm-api!:methodSettings": None},
                 {"llm-api:methodSettings.settings": {"metricsEnabled": True}},
                 {"llm-api!:methodSettings": None, METHOD + "apiKeyRequired": True,
                  "+": [usage_plan(), plus(KEY_LINK, "k", {"keyId": "key1", "usagePlanId": "up1"})]},
                 {"+": http_api("JWT") + [plus(HTTP_STAGE, "h", {"apiId": "h77p", "name": "$default"})]}],
        unknown=({"llm-api:methodSettings.settings.throttlingRateLimit": UNKNOWN}, "note"),
        config=({"environment": "dev"}, {"llm-api!:methodSettings": None}, "fail")),
    "sagemaker-endpoint-encrypted": C(
        "sagemaker",
        passing=[{SMC + "kmsKeyArn": "alias/llm"},
                 {SMC + "kmsKeyArn": DELETE, SMC + "productionVariants": [
                     {"modelName": "llm-8b-model",
                      "serverlessConfig": {"maxConcurrency": 5, "memorySizeInMb": 6144}}]}],
        failing=[{SMC + "kmsKeyArn": DELETE}, {SMC + "kmsKeyArn": ""}],
        unknown=({SMC + "kmsKeyArn": UNKNOWN}, "pass"),
        config=({"environment": "dev"}, {SMC + "kmsKeyArn": DELETE}, "fail")),
    "no-plaintext-model-urls": C(
        "k8s",
        passing=[{PROXY + ".env": [{"name": "OLLAMA_BASE_URL", "value": "http://127.0.0.1:11434"}]},
                 {PROXY + ".env": [{"name": "OPENAI_API_BASE", "value": "https://llm.internal.example.com/v1"}]},
                 {PROXY + ".env": [{"name": "DOCS_URL", "value": "http://docs.example.com"}]},
                 {PROXY + ".env": [{"name": "UPSTREAM", "value": "http://10.0.3.7:8000/v1"}],
                  "llm-8b:Deployment.spec.template.metadata.labels": {"app": "llm-8b",
                                                                      "sidecar.istio.io/inject": "true"}}],
        failing=[{PROXY + ".env": [{"name": "OLLAMA_BASE_URL",
                                    "value": "http://ollama-service.ollama.svc.cluster.local:11434"}]},
                 {PROXY + ".env": [{"name": "UPSTREAM", "value": "http://10.0.3.7:8000/v1"}]},
                 {"@stack": "ec2"} | ud(extra="docker run -d --name ui -e OPENAI_API_BASE_URL=http://vllm.internal/v1 "
                                              "ghcr.io/open-webui/open-webui@sha256:" + "3" * 64)],
        unknown=({PROXY + ".env": [{"name": "OLLAMA_BASE_URL", "value": UNKNOWN}]}, "note"),
        config=({"environment": "dev"}, {PROXY + ".env": [{"name": "UPSTREAM", "value": "http://10.0.3.7:8000"}]},
                "fail")),
    "k8s-network-policy": C(
        "k8s",
        passing=[{NETPOL + "spec.podSelector": {}},
                 {NETPOL + "spec.podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                      "values": ["llm-8b", "x"]}]}},
                 {NETPOL + "spec.policyTypes": DELETE},
                 {"llm-8b!:NetworkPolicy": None, "+": [plus("kubernetes:cilium.io/v2:CiliumNetworkPolicy", "llm-8b", {
                     "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "llm-8b"},
                     "spec": {"endpointSelector": {"matchLabels": {"app": "llm-8b"}},
                              "ingress": [{"fromCIDR": ["10.40.0.0/16"]}]}})]}],
        failing=[{"llm-8b!:NetworkPolicy": None}, {NETPOL + "spec.podSelector": {"matchLabels": {"app": "other"}}},
                 {NETPOL + "spec.policyTypes": ["Egress"]}, {NETPOL + "metadata.namespace": "other"}],
        unknown=({NETPOL + "spec.podSelector": {"matchLabels": {"app": UNKNOWN}}}, "note"),
        config=({"environment": "dev"}, {"llm-8b!:NetworkPolicy": None}, "fail")),
    "stateful-resources-protected": C(
        passing=[{"protect:cmk": None}],
        failing=[{"protect:cmk": False}, {"protect:models": False}],
        unknown=({"protect:runtime-logs": None}, "pass"),
        config=({"environment": "dev"}, {"protect:cmk": False}, "pass")),
}


def findings(rule, base, changes, config=None):
    changes = dict(changes)
    stack_name = changes.pop("@stack", base)
    protect = {k.split(":", 1)[1]: changes.pop(k) for k in list(changes) if k.startswith("protect:")}
    resources = to_resources(mutate(STACKS[stack_name](), changes))
    for r in resources:
        if r.name in protect:
            r.protect = protect[r.name]
    ctx = rule.context(DEFAULT_CONFIG.get(rule.name) if config is None else config)
    if rule.kind == "resource":
        out = [f for r in resources for f in rule.run(r, ctx)]
    else:
        out = rule.run(Stack(resources), ctx)
    notes = [f.message for f in out if f.undetermined]
    assert not [n for n in notes if "could not evaluate" in n], notes     # a rule crashed
    return [f.message for f in out if not f.undetermined], notes


def params(kind):
    for name, case in CASES.items():
        for i, changes in enumerate(case[kind]):
            yield pytest.param(name, changes, id=f"{name}-{i}")


def test_every_rule_has_cases():
    assert set(CASES) == set(BY_NAME)
    for name, case in CASES.items():
        assert case["passing"] and 2 <= len(case["failing"]) <= 6, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_baseline_is_compliant(name):
    for stack in {CASES[name]["stack"], "ec2", "ecs", "k8s"}:
        assert findings(BY_NAME[name], stack, {}) == ([], []), stack


@pytest.mark.parametrize("name,changes", list(params("passing")))
def test_passing_mutation(name, changes):
    violations, _ = findings(BY_NAME[name], CASES[name]["stack"], changes)
    assert violations == []


@pytest.mark.parametrize("name,changes", list(params("failing")))
def test_failing_mutation(name, changes):
    violations, _ = findings(BY_NAME[name], CASES[name]["stack"], changes)
    assert violations, "the misconfiguration went unnoticed"


@pytest.mark.parametrize("name", sorted(CASES))
def test_unknown_value(name):
    changes, expect = CASES[name]["unknown"]
    violations, notes = findings(BY_NAME[name], CASES[name]["stack"], changes)
    assert violations == [], "an unknown value is never a violation"
    if expect == "note":
        assert notes, "the rule says it could not decide"


@pytest.mark.parametrize("name", sorted(CASES))
def test_explicit_config(name):
    config, changes, expect = CASES[name]["config"]
    violations, _ = findings(BY_NAME[name], CASES[name]["stack"], changes, config)
    assert bool(violations) == (expect == "fail")


def test_findings_of_all_rules_on_all_baselines_are_empty():
    for stack in STACKS:
        for rule in ALL:
            assert findings(rule, stack, {}) == ([], []), (stack, rule.name)


def test_allow_list_unconfigured_reports_once_as_advisory():
    from llm_platform.policies.engine import evaluate
    for stack in STACKS:
        violations, _ = evaluate(to_resources(STACKS[stack]()), environment="prod")
        mine = [v for v in violations if v["policy"] == "model-allow-list"]
        assert len(mine) == 1 and mine[0]["enforcement"] == "advisory", (stack, mine)
        assert "no model allow-list is configured" in mine[0]["message"]
        assert "meta-llama/Llama-3.1-8B-Instruct" in mine[0]["message"]
        assert not [v for v in violations if v["enforcement"] == "mandatory"], stack


def test_ecs_port_mappings_publish_on_the_instance_only_outside_awsvpc():
    """awsvpc: a port mapping is the task ENI's own port (the bind address decides exposure); bridge: docker
    publishes it on the instance, past any proxy, whatever the server binds inside the container."""
    from llm_platform.policies.workloads import exposure, workload
    for mode, exposed in (("awsvpc", False), ("bridge", True)):
        changes = ecs_vllm(portMappings=[{"containerPort": 8000, "hostPort": 8000}])
        changes.pop("@stack")
        changes["llm-8b-task.networkMode"] = mode
        task = next(r for r in to_resources(mutate(STACKS["ecs"](), changes)) if r.name == "llm-8b-task")
        (vllm,) = [p for p in workload(task).processes if p.runtime == "vllm"]
        assert bool(exposure(vllm)) is exposed, mode
