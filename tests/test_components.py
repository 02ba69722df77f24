"""The EC2 platform under the mocks harness: security properties on the recorded inputs, the
plan flowing into every resource, and no secret anywhere in plaintext."""
import copy
import json
import re

import pytest

from llm_platform.offline.mocks import SECRET, computed_outputs, run_program
from llm_platform.serving.userdata import decode_user_data
from llm_platform.settings import parse, read_stack_file
from llm_platform.sizing.fallbacks import UNITS_PER_REPLICA
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def prod_raw():
    return read_stack_file(ROOT / "Pulumi.prod.yaml")


@pytest.fixture(scope="module")
def prod(shipped):
    return shipped("prod")


@pytest.fixture(scope="module")
def prod_plans(prod_raw):
    return {p.name: p for p in plan_stack(parse(prod_raw))}


@pytest.fixture(scope="module")
def dev(shipped):
    return shipped("dev")


def rec_stack(rec):
    """The stack a recording was made for (its platform component is llm-<stack>)."""
    return rec.stack_urn.split("::")[0].rsplit(":", 1)[-1]


def user_data(rec, deployment):
    return decode_user_data(rec.named(f"llm-{rec_stack(rec)}-{deployment}-fleet-lt").inputs["userData"])


# --- network ---------------------------------------------------------------------------------

def test_air_gapped_network_has_no_internet_path(prod):
    for t in ("aws:ec2/internetGateway:InternetGateway", "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip",
              "aws:ec2/route:Route"):
        assert prod.of_type(t) == [], t
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in prod.of_type("aws:ec2/subnet:Subnet"))
    assert len(prod.of_type("aws:ec2/subnet:Subnet")) == 3          # one private subnet per AZ


def test_air_gapped_network_reaches_aws_through_endpoints(prod):
    eps = prod.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    services = {e.inputs["serviceName"].removeprefix("com.amazonaws.us-east-1.") for e in eps}
    assert {"secretsmanager", "kms", "ecr.api", "ecr.dkr", "logs", "monitoring", "ssm", "ssmmessages",
            "ec2messages", "sts", "s3"} <= services
    gateway = [e for e in eps if e.inputs["vpcEndpointType"] == "Gateway"]
    assert len(gateway) == 1 and len(gateway[0].inputs["routeTableIds"]) == 3
    assert all(e.inputs["privateDnsEnabled"] for e in eps if e.inputs["vpcEndpointType"] == "Interface")


def test_nat_egress_has_one_gateway_per_az(prod_raw):
    raw = copy.deepcopy(prod_raw)
    raw["llm-platform:network"]["egress"] = "nat"
    rec = run_program(raw, stack="prod", program=ROOT)
    assert len(rec.of_type("aws:ec2/natGateway:NatGateway")) == 3
    assert len(rec.of_type("aws:ec2/internetGateway:InternetGateway")) == 1
    private_default = [r for r in rec.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs]
    assert len(private_default) == 3


def test_default_security_group_has_no_rules_and_flow_logs_are_encrypted(prod):
    dsg = prod.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")[0]
    assert dsg.inputs.get("ingress", []) == [] and dsg.inputs.get("egress", []) == []
    flow = prod.of_type("aws:ec2/flowLog:FlowLog")[0]
    assert flow.inputs["trafficType"] == "ALL"
    group = prod.named("llm-prod-network-flow-logs", "aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:") and group.inputs["retentionInDays"] == 90


def test_ingress_only_from_configured_cidrs_on_the_proxy_and_metrics_ports(prod, prod_raw):
    net = prod_raw["llm-platform:network"]
    rules = prod.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    for r in rules:
        port = r.inputs["fromPort"]
        assert r.inputs["fromPort"] == r.inputs["toPort"]
        assert port not in (22, 3389)
        cidr = r.inputs.get("cidrIpv4")
        if cidr is not None:
            assert cidr not in ("0.0.0.0/0",) and "cidrIpv6" not in r.inputs
        if port == 443 and cidr and cidr != net["cidr"]:
            assert cidr in net["allowed_client_cidrs"]
        elif port == 9443:
            assert cidr in net["monitoring_cidrs"]
        elif port == 8443:
            assert "referencedSecurityGroupId" in r.inputs and cidr is None
    assert {r.inputs["fromPort"] for r in rules} == {443, 8443, 9443}


# --- load balancer ---------------------------------------------------------------------------

def test_load_balancer_is_internal_https_only_with_a_tls13_policy(prod):
    alb = prod.of_type("aws:lb/loadBalancer:LoadBalancer")[0]
    assert alb.inputs["internal"] is True and alb.inputs["dropInvalidHeaderFields"] is True
    assert alb.inputs["enableDeletionProtection"] is True                  # prod
    assert alb.inputs["accessLogs"]["enabled"] is True
    listeners = prod.of_type("aws:lb/listener:Listener")
    assert [(li.inputs["protocol"], li.inputs["port"]) for li in listeners] == [("HTTPS", 443)]
    assert listeners[0].inputs["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    for tg in prod.of_type("aws:lb/targetGroup:TargetGroup"):
        assert tg.inputs["protocol"] == "HTTPS" and tg.inputs["healthCheck"]["protocol"] == "HTTPS"
        assert tg.inputs["healthCheck"]["path"] == "/health"
        assert tg.inputs["loadBalancingAlgorithmType"] == "least_outstanding_requests"


def test_dev_load_balancer_can_be_deleted(dev):
    assert dev.of_type("aws:lb/loadBalancer:LoadBalancer")[0].inputs["enableDeletionProtection"] is False


def test_one_host_rule_and_dns_name_per_model(prod, prod_plans):
    rules = prod.of_type("aws:lb/listenerRule:ListenerRule")
    hosts = {r.inputs["conditions"][0]["hostHeader"]["values"][0] for r in rules}
    assert hosts == {f"{n}.llm.internal.example.com" for n in prod_plans}
    assert len(prod.of_type("aws:route53/record:Record")) == len(prod_plans)


def test_waf_is_associated_with_limits_from_the_config(prod, prod_raw):
    api = prod_raw["llm-platform:api"]
    acl = prod.of_type("aws:wafv2/webAcl:WebAcl")[0]
    rules = {r["name"]: r for r in acl.inputs["rules"]}
    assert rules["rate-limit-per-ip"]["statement"]["rateBasedStatement"]["limit"] == api["rate_limit_per_5min"]
    size = rules["request-size"]["statement"]["sizeConstraintStatement"]
    assert size["size"] == len(str(api["max_prompt_bytes"]))     # 256 KiB is beyond WAF's 8 KiB body window
    assert {"aws-common", "aws-known-bad-inputs"} <= rules.keys()
    assoc = prod.of_type("aws:wafv2/webAclAssociation:WebAclAssociation")[0]
    assert assoc.inputs["resourceArn"].startswith("arn:aws:elasticloadbalancing:")
    logging = prod.of_type("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")[0]
    assert logging.inputs["redactedFields"] == [{"singleHeader": {"name": "authorization"}}]


def test_small_body_limits_are_enforced_by_waf_on_the_body(prod_raw):
    from llm_platform.components.load_balancer import waf_rules
    size = {r["name"]: r for r in waf_rules(100, 4096)}["request-size"]["statement"]["size_constraint_statement"]
    assert size["size"] == 4096 and "body" in size["field_to_match"]


def test_internal_certificate_keeps_its_private_key_secret(prod):
    cert = prod.of_type("aws:acm/certificate:Certificate")[0]
    assert cert.inputs["privateKey"] == SECRET
    assert "BEGIN CERTIFICATE" in cert.inputs["certificateBody"]


# --- GPU fleets ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["llama-70b", "qwen-coder-32b", "llama-8b", "nomic-embed"])
def test_launch_templates_follow_the_plan_and_are_hardened(prod, prod_plans, name):
    plan = prod_plans[name]
    lt = prod.named(f"llm-prod-{name}-fleet-lt").inputs
    assert lt["instanceType"] == plan.instance_type
    assert lt["metadataOptions"]["httpTokens"] == "required" and lt["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert lt["networkInterfaces"][0]["associatePublicIpAddress"] == "false"
    ebs = lt["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["kmsKeyId"].startswith("arn:aws:kms:")
    assert ebs["volumeSize"] == plan.volume_gib and ebs["volumeType"] == "gp3"
    assert lt["monitoring"]["enabled"] is True
    tags = lt["tags"]
    assert tags["llm-platform:model"] == plan.model and tags["llm-platform:revision"] == plan.revision
    assert tags["llm-platform:tensor-parallel"] == str(plan.tensor_parallel_size)
    assert tags["llm-platform:provenance-review-status"] == "approved"


@pytest.mark.parametrize("name", ["llama-70b", "qwen-coder-32b", "llama-8b", "nomic-embed"])
def test_auto_scaling_groups_follow_the_plan(prod, prod_plans, name):
    plan = prod_plans[name]
    asg = prod.named(f"llm-prod-{name}-fleet-asg").inputs
    # sizes in capacity units (sizing/fallbacks.py): a chosen-type replica is UNITS_PER_REPLICA units
    assert (asg["minSize"], asg["maxSize"]) == (plan.replicas_min * UNITS_PER_REPLICA,
                                                plan.replicas_max * UNITS_PER_REPLICA)
    # a fixed group states its size; an autoscaled one leaves desired capacity to its policy
    assert asg.get("desiredCapacity") == (plan.instances * UNITS_PER_REPLICA if plan.replicas_min == plan.replicas_max
                                          else None)
    # the grace period covers a cold start (boot and image pull on top of the data path)
    assert asg["healthCheckType"] == "ELB" and asg["healthCheckGracePeriod"] == plan.startup.cold_seconds
    assert plan.startup.cold_seconds >= plan.startup_seconds
    assert len(asg["vpcZoneIdentifiers"]) == 3
    assert asg["instanceRefresh"]["strategy"] == "Rolling"
    assert asg["instanceRefresh"]["preferences"]["minHealthyPercentage"] == 100


def test_autoscaled_models_scale_on_queue_depth(prod, prod_plans):
    policies = {p.name: p.inputs for p in prod.of_type("aws:autoscaling/policy:Policy")}
    scaled = {f"llm-prod-{n}-fleet-queue-depth" for n, p in prod_plans.items() if p.replicas_max > p.replicas_min}
    assert scaled and set(policies) == scaled
    for policy in policies.values():
        spec = policy["targetTrackingConfiguration"]["customizedMetricSpecification"]
        queue = next(m for m in spec["metrics"] if m["id"] == "queue")     # per capacity unit (fleet_capacity.py)
        assert queue["metricStat"]["metric"]["metricName"] == "vllm:num_requests_waiting"


def test_vllm_flags_come_from_the_plan(prod, prod_plans):
    plan = prod_plans["llama-70b"]
    ud = user_data(prod, "llama-70b")
    for flag, value in (("--served-model-name", plan.name), ("--tensor-parallel-size", plan.tensor_parallel_size),
                        ("--pipeline-parallel-size", plan.pipeline_parallel_size),
                        ("--max-model-len", plan.max_model_len), ("--max-num-seqs", plan.concurrency),
                        ("--max-num-batched-tokens", plan.max_num_batched_tokens),
                        ("--gpu-memory-utilization", plan.gpu_memory_utilization), ("--quantization", "fp8")):
        assert f"{flag} {value}" in ud, flag
    assert "-p 127.0.0.1:8000:8000" in ud and "--trust-remote-code" not in ud
    assert "--enable-log-requests" not in ud
    assert re.search(r"docker-hub/vllm/vllm-openai@sha256:[0-9a-f]{64}", ud)


def test_remote_code_only_where_the_registry_allows(prod):
    assert "--trust-remote-code" in user_data(prod, "nomic-embed")
    assert "--runner pooling" in user_data(prod, "nomic-embed")


def test_ollama_publishes_on_loopback_only_with_the_plans_parallelism(dev):
    ud = user_data(dev, "qwen-coder-7b")
    # its own network namespace on the `llm` bridge (never the host's), its port published on 127.0.0.1 only
    assert "OLLAMA_HOST=0.0.0.0:11434" in ud and "-p 127.0.0.1:11434:11434" in ud and "--network host" not in ud
    assert "OLLAMA_NUM_PARALLEL=4" in ud
    assert "OLLAMA_CONTEXT_LENGTH=8192" in ud and "OLLAMA_KEEP_ALIVE=-1" in ud
    assert "api/pull" not in ud and "api/delete" not in ud      # model management never routed


def test_boot_verifies_the_model_and_fails_closed(prod, prod_raw):
    ud = user_data(prod, "llama-8b")
    digest = prod_raw["llm-platform:models"][2]["checksums"]["sha256"]
    assert f"MANIFEST_SHA256={digest}" in ud
    assert "/usr/local/sbin/llm-verify-model \"$dest\" \"$manifest\" \"$MANIFEST_SHA256\"" in ud
    assert "files not in the manifest" in ud          # the verification script itself, in /usr/local/sbin
    assert "Requires=docker.service llm-model.service" in ud     # no verified model, no runtime
    assert "OnFailure=llm-unhealthy.service" in ud and "set-instance-health" in ud


def test_proxy_authenticates_streams_and_caps_bodies(prod, prod_raw):
    ud = user_data(prod, "qwen-coder-32b")
    assert f"client_max_body_size {prod_raw['llm-platform:api']['max_prompt_bytes']};" in ud
    assert "return 401;" in ud and "proxy_buffering off;" in ud and "proxy_read_timeout 3600s;" in ud
    assert "listen 8443 ssl;" in ud and "ssl_protocols TLSv1.2 TLSv1.3;" in ud
    assert "allow 10.20.0.0/24;" in ud and "deny all;" in ud
    assert '"model":"qwen-coder-32b"' in ud and "$request_body" not in ud    # audit, never the prompt


def test_instance_role_reads_only_its_own_model_and_the_client_keys(prod):
    policy = json.loads(prod.named("llm-prod-llama-8b-fleet-instance",
                                   "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    stmts = {s["Sid"]: s for s in policy["Statement"]}
    assert stmts["ReadThisModel"]["Resource"].endswith("/models/llama-8b/0e9e39f249a16976918f6564b8830bc894c89659/*")
    assert all(":secret:llm-platform/prod/clients/" in a for a in stmts["ReadClientKeys"]["Resource"])
    assert not any(s.get("Action") == "*" or s.get("Action") == ["*"] for s in policy["Statement"])


# --- keys, store, monitoring ----------------------------------------------------------------

def test_kms_key_rotates_and_secrets_logs_topic_use_it(prod):
    key = prod.of_type("aws:kms/key:Key")[0].inputs
    assert key["enableKeyRotation"] is True and key["deletionWindowInDays"] == 30
    for s in prod.of_type("aws:secretsmanager/secret:Secret"):
        assert s.inputs["kmsKeyId"].startswith("arn:aws:kms:")
    for g in prod.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert g.inputs["kmsKeyId"].startswith("arn:aws:kms:") and g.inputs["retentionInDays"] == 90
    assert prod.of_type("aws:sns/topic:Topic")[0].inputs["kmsMasterKeyId"]


def test_one_generated_key_per_client(prod, prod_raw):
    clients = prod_raw["llm-platform:api"]["clients"] + ["deploy-gate"]     # the deploy gate's own key
    secrets = [s for s in prod.of_type("aws:secretsmanager/secret:Secret") if "/clients/" in s.inputs["name"]]
    assert sorted(s.inputs["name"].rsplit("/", 1)[-1] for s in secrets) == sorted(clients)
    passwords = prod.of_type("random:index/randomPassword:RandomPassword")
    assert len(passwords) == len(clients) and all(p.inputs["length"] >= 32 and p.inputs["special"] is False
                                                  for p in passwords)
    assert all(v.inputs["secretString"] == SECRET
               for v in prod.of_type("aws:secretsmanager/secretVersion:SecretVersion"))


def test_model_store_is_private_versioned_encrypted_and_tls_only(prod):
    pab = [r for r in prod.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")]
    assert pab and all(all(r.inputs[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                 "restrictPublicBuckets")) for r in pab)
    enc = prod.named("llm-prod-model-store-bucket",
                     "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert enc.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    policy = json.loads([r for r in prod.of_type("aws:s3/bucketPolicy:BucketPolicy")
                         if r.name == "llm-prod-model-store-policy"][0].inputs["policy"])
    sids = {s["Sid"]: s for s in policy["Statement"]}
    assert sids["DenyPlainHttp"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sids["ReadsOnlyThroughTheVpcEndpoint"]["Condition"]["StringNotEquals"]["aws:SourceVpce"].startswith("vpce-")


@pytest.mark.parametrize("name", ["llama-70b", "qwen-coder-32b", "llama-8b", "nomic-embed"])
def test_every_deployment_has_alarms_wired_to_the_topic(prod, prod_raw, prod_plans, name):
    mon = prod_raw["llm-platform:monitoring"]
    alarms = {a.name.removeprefix(f"llm-prod-{name}-"): a.inputs
              for a in prod.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.parent == f"llm-prod-{name}"}
    assert {"gpu-memory", "latency-p99", "unhealthy", "5xx", "queue"} <= alarms.keys()
    topic = prod.of_type("aws:sns/topic:Topic")[0]
    for a in alarms.values():
        assert a["alarmActions"] == [f"arn:aws:sns:us-east-1:123456789012:{topic.inputs['name']}"]
    assert alarms["gpu-memory"]["threshold"] == mon["gpu_memory_alarm_percent"]
    assert alarms["latency-p99"]["threshold"] == mon["latency_p99_seconds"]
    assert alarms["queue"]["threshold"] == prod_plans[name].concurrency


def test_alarm_email_subscribes_to_the_topic(prod, dev):
    assert prod.of_type("aws:sns/topicSubscription:TopicSubscription")[0].inputs["endpoint"] == "llm-oncall@example.com"
    assert dev.of_type("aws:sns/topicSubscription:TopicSubscription") == []


# --- secrets never leak ---------------------------------------------------------------------

def _secret_values(rec):
    values = [p.raw_inputs.get("result") for p in rec.of_type("random:index/randomPassword:RandomPassword")]
    for r in rec.resources:
        for v in r.raw_inputs.values():
            if isinstance(v, str) and ("PRIVATE KEY" in v or v.startswith("MOCKSECRET")):
                values.append(v)
    return [v for v in values if v]


def test_no_secret_appears_in_plaintext_in_any_recorded_input(prod_raw):
    raw = copy.deepcopy(prod_raw)
    raw["llm-platform:hfToken"] = {"secure": "v1:ciphertext"}
    rec = run_program(raw, stack="prod", program=ROOT)
    # the secret values the program handles: generated keys, the TLS private key, the HF token
    found = {r.name: r.raw_inputs for r in rec.resources}
    generated = [v["secretString"] for n, v in found.items() if "secretString" in v]
    keys = [v["privateKey"] for v in found.values() if "privateKey" in v]
    assert len(generated) == len(prod_raw["llm-platform:api"]["clients"]) + 2 and keys   # + the deploy gate's key
    assert "MOCKSECRET-config-hfToken" in generated
    everything = json.dumps([r.as_dict() for r in rec.resources])
    decoded = "".join(decode_user_data(r.inputs["userData"])
                      for r in rec.of_type("aws:ec2/launchTemplate:LaunchTemplate"))
    for secret in generated + keys:
        assert secret not in everything and secret not in decoded


def test_user_data_snapshot(prod):
    """The renderer's output for llama-8b, reviewed by hand. A change is a diff to review: refresh the file
    deliberately with UPDATE_SNAPSHOTS=1 and commit it; a missing snapshot is a failure, never written here."""
    import os
    path = ROOT / "tests" / "data" / "snapshots" / "userdata-prod-llama-8b.yaml"
    text = user_data(prod, "llama-8b")
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.write_text(text)
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: write it with UPDATE_SNAPSHOTS=1, review, commit"
    assert text == path.read_text()


def test_cloud_init_user_data_is_valid_yaml_with_the_units(prod):
    import yaml
    doc = yaml.safe_load(user_data(prod, "llama-70b"))
    paths = {f["path"] for f in doc["write_files"]}
    assert {"/etc/systemd/system/llm-runtime.service", "/etc/systemd/system/llm-proxy.service",
            "/etc/systemd/system/llm-model.service", "/usr/local/sbin/llm-fetch-model"} <= paths
    assert any("enable" in cmd for cmd in doc["runcmd"])


def test_without_a_docker_hub_credential_nothing_is_created_and_the_key_is_named(prod_raw):
    import pulumi
    raw = copy.deepcopy(prod_raw)
    del raw["llm-platform:images"]
    with pytest.raises(pulumi.RunError) as exc:
        run_program(raw, stack="prod", program=ROOT)
    assert "llm-platform:images.docker_hub_credential_arn: the vllm image" in str(exc.value)


def test_a_docker_hub_token_becomes_an_encrypted_secret_the_cache_rule_waits_for(prod_raw):
    raw = copy.deepcopy(prod_raw)
    raw["llm-platform:images"] = {"docker_hub_username": "llmplatform"}
    raw["llm-platform:dockerHubToken"] = {"secure": "v1:ciphertext"}
    rec = run_program(raw, stack="prod", program=ROOT)
    secret = rec.named("llm-prod-images-docker-hub", "aws:secretsmanager/secret:Secret")
    assert secret.inputs["name"].startswith("ecr-pullthroughcache/")
    assert secret.inputs["kmsKeyId"].startswith("arn:aws:kms")
    version = rec.named("llm-prod-images-docker-hub", "aws:secretsmanager/secretVersion:SecretVersion")
    assert version.inputs["secretString"] == SECRET
    assert "MOCKSECRET-config-dockerHubToken" in version.raw_inputs["secretString"]
    assert "MOCKSECRET-config-dockerHubToken" not in json.dumps([r.as_dict() for r in rec.resources])
    rule = rec.named("llm-prod-images-docker-hub", "aws:ecr/pullThroughCacheRule:PullThroughCacheRule")
    # the ARN AWS (here: the mocks) gives that secret, derived from the secret alone, not from the rule's value
    expected = computed_outputs("aws:secretsmanager/secret:Secret", secret.name, secret.inputs, "us-east-1")["arn"]
    assert expected.startswith(f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{secret.inputs['name']}-")
    assert rule.inputs["upstreamRegistryUrl"] == "registry-1.docker.io" and rule.inputs["credentialArn"] == expected


def test_one_stack_per_account_owns_the_cache_rules(prod_raw, prod):
    raw = copy.deepcopy(prod_raw)
    raw["llm-platform:images"] = {"create_cache_rules": False}
    rec = run_program(raw, stack="prod", program=ROOT)
    assert rec.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule") == []
    rules = prod.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")
    assert {r.inputs["ecrRepositoryPrefix"] for r in rules} == {"docker-hub", "ecr-public"}


# --- hardening (issue 10): recorded plans of dev and prod ----------------------------------------

def _parliament(doc: dict, endpoint_policy: bool = False) -> list[str]:
    from parliament import analyze_policy_string
    accepted = {"RESOURCE_STAR"} if endpoint_policy else set()
    result = analyze_policy_string(json.dumps(doc), include_community_auditors=False, ignore_private_auditors=True)
    return [f"{f.issue}: {f.detail}" for f in result.findings if f.issue not in accepted]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_vpc_endpoint_has_a_policy_bounded_to_this_account(stack, dev, prod):
    rec = {"dev": dev, "prod": prod}[stack]
    endpoints = rec.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    policies = {p.name: json.loads(p.inputs["policy"])
                for p in rec.of_type("aws:ec2/vpcEndpointPolicy:VpcEndpointPolicy")}
    assert len(endpoints) >= 13
    for ep in endpoints:
        if ep.inputs["vpcEndpointType"] == "Interface":
            doc = json.loads(ep.inputs["policy"])
            assert all(s["Condition"]["StringEquals"]["aws:PrincipalAccount"] for s in doc["Statement"]), ep.name
            assert doc["Statement"][0]["Condition"]["StringEquals"]["aws:ResourceAccount"]
        else:
            doc = policies[f"{ep.name}-policy"]      # set once the bucket exists (PrivateNetwork.s3_endpoint_policy)
            resources = {r for s in doc["Statement"] for r in s["Resource"]}
            (bucket,) = [r for r in resources if r.startswith(f"arn:aws:s3:::llm-{stack}-models-") and "/" not in r]
            assert resources == {bucket, f"{bucket}/*", "arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*",
                                 "arn:aws:s3:::al2023-repos-us-east-1-de612dc2/*"}
            assert not [s for s in doc["Statement"] if "s3:PutObject" in s["Action"]]
        assert _parliament(doc, endpoint_policy=True) == [], ep.name


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_egress_none_has_a_dns_firewall_that_blocks_all_but_the_endpoints(stack, dev, prod):
    rec = {"dev": dev, "prod": prod}[stack]
    lists = {d.name.rsplit("-", 1)[-1]: d.inputs["domains"]
             for d in rec.of_type("aws:route53/resolverFirewallDomainList:ResolverFirewallDomainList")}
    assert lists["everything"] == ["*"]
    domain = {"dev": "llm.dev.internal", "prod": "llm.internal.example.com"}[stack]
    assert {"secretsmanager.us-east-1.amazonaws.com", "*.dkr.ecr.us-east-1.amazonaws.com",
            "api.ecr.us-east-1.amazonaws.com", "*.s3.us-east-1.amazonaws.com", domain,
            f"*.{domain}"} <= set(lists["allowed"])
    rules = {r.inputs["action"]: r.inputs for r in rec.of_type("aws:route53/resolverFirewallRule:ResolverFirewallRule")}
    assert rules["ALLOW"]["priority"] < rules["BLOCK"]["priority"] and rules["BLOCK"]["blockResponse"] == "NXDOMAIN"
    (assoc,) = rec.of_type("aws:route53/resolverFirewallRuleGroupAssociation:ResolverFirewallRuleGroupAssociation")
    assert assoc.inputs["vpcId"] == f"{rec.of_type('aws:ec2/vpc:Vpc')[0].name}-id"
    (config,) = rec.of_type("aws:route53/resolverFirewallConfig:ResolverFirewallConfig")
    assert config.inputs["firewallFailOpen"] == "DISABLED"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gpu_roles_carry_no_aws_managed_policy_and_pass_parliament(stack, dev, prod):
    rec = {"dev": dev, "prod": prod}[stack]
    fleet_roles = {f"{r.name}-id" for r in rec.of_type("aws:iam/role:Role") if r.name.endswith("-fleet-instance")}
    assert fleet_roles
    attached = [a for a in rec.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a.inputs["role"] in fleet_roles or a.name.endswith(("ManagedInstanceCore", "AgentServerPolicy"))]
    assert attached == []
    docs = [json.loads(p.inputs["policy"]) for p in rec.of_type("aws:iam/rolePolicy:RolePolicy")
            if p.name.endswith(("-fleet-instance", "-fleet-instance-agents"))]
    assert len(docs) == 2 * len(fleet_roles)
    for doc in docs:
        assert _parliament(doc) == []
    everything = json.dumps([json.loads(p.inputs["policy"]) for p in rec.of_type("aws:iam/rolePolicy:RolePolicy")])
    assert "ecr:CreateRepository" not in everything and "logs:PutRetentionPolicy" not in everything
    health = [s for d in docs for s in d["Statement"] if s["Action"] == ["autoscaling:SetInstanceHealth"]]
    assert health and all(s["Condition"]["StringEquals"]["aws:ResourceTag/llm-platform:stack"] == stack for s in health)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_container_uses_host_networking(stack, dev, prod):
    rec = {"dev": dev, "prod": prod}[stack]
    for lt in rec.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        text = decode_user_data(lt.inputs["userData"])
        assert "--network host" not in text and "--net=host" not in text, lt.name
        assert text.count("--network llm") == 2, lt.name
        assert lt.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1


def test_flow_log_role_describes_log_groups_on_star(prod):
    (policy,) = [json.loads(p.inputs["policy"]) for p in prod.of_type("aws:iam/rolePolicy:RolePolicy")
                 if p.name.endswith("flow-logs")]
    describe = [s for s in policy["Statement"] if "logs:DescribeLogGroups" in s["Action"]]
    assert describe and describe[0]["Resource"] == "*"
    assert _parliament(policy) == []


# ----------------------------------------------------------------------------- the deploy gate (components/gate.py)

def test_the_deploy_gate_task_has_its_plan_and_least_privilege_roles(prod, prod_raw):
    """ec2: a Fargate task definition that carries every model's gate spec and gets only the gate's key; its
    execution role pulls one image, writes one log group, reads one secret; its task role writes one prefix and
    one metrics namespace."""
    td = prod.named("llm-prod-gate-task", "aws:ecs/taskDefinition:TaskDefinition")
    assert td.inputs["requiresCompatibilities"] == ["FARGATE"] and td.inputs["networkMode"] == "awsvpc"
    (c,) = json.loads(td.inputs["containerDefinitions"])
    (secret,) = c["secrets"]
    assert re.search(r":secret:llm-platform/prod/clients/deploy-gate-\w+$", secret["valueFrom"])
    env = {e["name"]: e["value"] for e in c["environment"]}
    specs = {s["deployment"]["name"]: s for s in json.loads(env["LLM_GATE_SPECS"])["deployments"]}
    stated = {m["name"]: m.get("load") for m in prod_raw["llm-platform:models"]}
    assert {n: s["load"] and {k: v for k, v in s["load"].items() if v is not None} for n, s in specs.items()} == stated
    assert specs["llama-70b"]["deployment"]["throughput"]["tpot_seconds"]     # the plan it is judged against
    assert env["LLM_GATE_CA_PEM"].startswith("-----BEGIN CERTIFICATE-----")    # the internal CA the ALB uses
    assert c["readonlyRootFilesystem"] and c["user"] == "10001:10001"
    # pinned by the digest ECR lists for this version's content tag (the mocks answer as after the workflow's push)
    assert re.fullmatch(r"\d+\.dkr\.ecr\.us-east-1\.amazonaws\.com/llm-platform/prod/deploy-gate@sha256:[0-9a-f]{64}",
                        c["image"]) and not c["image"].endswith("0" * 64)

    def statements(name):
        return json.loads(prod.named(name, "aws:iam/rolePolicy:RolePolicy").inputs["policy"])["Statement"]
    exe, task = statements("llm-prod-gate-execution"), statements("llm-prod-gate-task")
    reads = [s for s in exe if "secretsmanager:GetSecretValue" in s["Action"]]
    assert [s["Resource"] for s in reads] == [secret["valueFrom"]]
    assert not any("secretsmanager:GetSecretValue" in s["Action"] for s in task)
    assert {a for s in task for a in s["Action"]} == {"cloudwatch:PutMetricData"}
    for role in ("llm-prod-gate-execution", "llm-prod-gate-task"):
        trust = json.loads(prod.named(role, "aws:iam/role:Role").inputs["assumeRolePolicy"])["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "ecs-tasks.amazonaws.com"}]
        assert trust[0]["Condition"]["StringEquals"]["aws:SourceAccount"]
    # network: HTTPS inside the VPC and to S3 only; the ALB admits the gate's group
    egress = [r.inputs for r in prod.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
              if r.name.startswith("llm-prod-gate-")]
    assert {(e["fromPort"], e["toPort"]) for e in egress} == {(443, 443)}
    assert {e.get("cidrIpv4") or e.get("prefixListId") for e in egress} - {None} and \
        all(e.get("cidrIpv4") in (None, prod_raw["llm-platform:network"]["cidr"]) for e in egress)
    assert prod.named("llm-prod-gate-alb-from-gate").inputs["fromPort"] == 443
    repo = prod.named("llm-prod-gate-image", "aws:ecr/repository:Repository").inputs
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"] == {"scanOnPush": True}
