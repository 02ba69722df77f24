"""Endpoint, DNS and role policies (serving/access.py), judged by parliament (duo-labs' IAM linter: unknown
actions, conditions an action does not support, resource ARNs that do not match an action's resource types)
and by what the red team showed: another account's bucket through the S3 endpoint, account-wide SSM
parameters, any log group's retention, a dev instance marking prod ones unhealthy."""
from __future__ import annotations

import json

import pytest
from parliament import analyze_policy_string

from llm_platform.serving import access

ACCOUNT, REGION, STACK = "123456789012", "us-east-1", "prod"
BUCKET = "arn:aws:s3:::llm-prod-models-0a1b2c"
SERVICES = ("secretsmanager", "kms", "ecr.api", "ecr.dkr", "logs", "monitoring", "ssm", "ssmmessages", "ec2messages",
            "sts", "autoscaling", "ec2", "eks-auth", "elasticloadbalancing")
# parliament findings that are about style or its own data, not about a policy being wrong
IGNORED = {"RESOURCE_POLICY_PRIVILEGE_ESCALATION"}


def findings(policy: dict, endpoint_policy: bool = False) -> list[str]:
    result = analyze_policy_string(json.dumps(policy), include_community_auditors=False,
                                   ignore_private_auditors=True)
    # an endpoint policy's star resource is the point of its "actions without a resource owner" statement
    # (AWS-owned documents and images); it is bounded by the principal's account and an action list
    accepted = IGNORED | ({"RESOURCE_STAR"} if endpoint_policy else set())
    return [f"{f.issue}: {f.detail}" for f in result.findings if f.issue not in accepted]


def instance_policy(**kw) -> dict:
    args = dict(account=ACCOUNT, region=REGION, stack=STACK, deployment="llama-8b",
                log_group_arns=[f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/llm-platform/prod/audit"],
                parameter_arns=[f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/llm-platform/prod/llama-8b/cloudwatch-agent"],
                repository_arns=[f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/docker-hub/vllm/vllm-openai"])
    args.update(kw)
    return {"Version": "2012-10-17", "Statement": access.instance_statements(**args)}


def test_the_instance_policy_passes_parliament():
    assert findings(instance_policy()) == []


def test_the_flow_log_policy_passes_parliament_and_describes_on_star():
    doc = {"Version": "2012-10-17", "Statement": access.flow_log_statements(
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/llm-platform/prod/vpc-flow-logs")}
    assert findings(doc) == []
    describe = next(s for s in doc["Statement"] if "logs:DescribeLogGroups" in s["Action"])
    assert describe["Resource"] == "*"


@pytest.mark.parametrize("service", SERVICES)
def test_interface_endpoint_policies_pass_parliament(service):
    assert findings(access.interface_endpoint_policy(ACCOUNT, service), endpoint_policy=True) == []


def test_the_s3_endpoint_policy_passes_parliament():
    assert findings(access.s3_endpoint_policy(ACCOUNT, REGION, [BUCKET]), endpoint_policy=True) == []


def _allows(policy: dict, action: str, resource: str, context: dict) -> bool:
    """A small evaluator of Allow statements (Action/Resource wildcards, StringEquals): enough for these shapes."""
    from fnmatch import fnmatchcase

    def listed(v):
        return v if isinstance(v, list) else [v]
    for st in policy["Statement"]:
        if st["Effect"] != "Allow":
            continue
        if not any(fnmatchcase(action, a) for a in listed(st["Action"])):
            continue
        if not any(fnmatchcase(resource, r) for r in listed(st["Resource"])):
            continue
        cond = st.get("Condition", {}).get("StringEquals", {})
        if all(context.get(k) in listed(v) for k, v in cond.items()):
            return True
    return False


def test_the_s3_endpoint_refuses_other_accounts_buckets_and_writes():
    policy = access.s3_endpoint_policy(ACCOUNT, REGION, [BUCKET])
    me = {"aws:PrincipalAccount": ACCOUNT, "aws:ResourceAccount": ACCOUNT}
    assert _allows(policy, "s3:GetObject", f"{BUCKET}/models/llama/rev/model.safetensors", me)
    assert _allows(policy, "s3:ListBucket", BUCKET, me)
    assert _allows(policy, "s3:GetObject", f"arn:aws:s3:::prod-{REGION}-starport-layer-bucket/sha256/abc", {})
    # the exfiltration the red team showed: this account's role writing to someone else's bucket
    assert not _allows(policy, "s3:PutObject", "arn:aws:s3:::attacker-bucket/prompts.txt", me)
    assert not _allows(policy, "s3:PutObject", f"{BUCKET}/x", me)
    assert not _allows(policy, "s3:GetObject", "arn:aws:s3:::attacker-bucket/tool.sh", me)
    # another account's principal using our endpoint
    assert not _allows(policy, "s3:GetObject", f"{BUCKET}/x", {"aws:PrincipalAccount": "999999999999",
                                                               "aws:ResourceAccount": ACCOUNT})


def test_interface_endpoints_admit_only_this_accounts_principals_and_resources():
    policy = access.interface_endpoint_policy(ACCOUNT, "secretsmanager")
    mine = {"aws:PrincipalAccount": ACCOUNT, "aws:ResourceAccount": ACCOUNT}
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x"
    assert _allows(policy, "secretsmanager:GetSecretValue", secret, mine)
    assert not _allows(policy, "secretsmanager:PutSecretValue",
                       "arn:aws:secretsmanager:us-east-1:999999999999:secret:y",
                       {"aws:PrincipalAccount": ACCOUNT, "aws:ResourceAccount": "999999999999"})
    assert not _allows(policy, "secretsmanager:GetSecretValue", secret,
                       {"aws:PrincipalAccount": "999999999999", "aws:ResourceAccount": ACCOUNT})
    # actions without a resource owner: this account's principals only, and only the listed ones
    ecr = access.interface_endpoint_policy(ACCOUNT, "ecr.api")
    assert _allows(ecr, "ecr:GetAuthorizationToken", "*", {"aws:PrincipalAccount": ACCOUNT})
    assert not _allows(ecr, "ecr:PutImage", "arn:aws:ecr:us-east-1:999999999999:repository/x",
                       {"aws:PrincipalAccount": ACCOUNT, "aws:ResourceAccount": "999999999999"})


def test_no_aws_managed_broad_grants_remain_in_the_instance_policy():
    text = json.dumps(instance_policy())
    statements = instance_policy()["Statement"]
    assert "ecr:CreateRepository" not in text and "logs:PutRetentionPolicy" not in text
    assert "logs:CreateLogGroup" not in text and "ssm:GetParameters" not in text
    for st in statements:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert not any(a.endswith(":*") or a == "*" for a in actions), st
        if st["Resource"] == "*":
            # a star resource only where the action has no resource type or a condition bounds it
            assert st.get("Condition") or set(actions) <= {
                "ec2:DescribeTags", "ecr:GetAuthorizationToken", "ecr:BatchImportUpstreamImage",
                *access.PRINCIPAL_ONLY_ACTIONS["ssmmessages"],
                *access.PRINCIPAL_ONLY_ACTIONS["ec2messages"]}, st
    metrics = next(s for s in statements if s["Sid"] == "OwnMetricNamespaces")
    assert metrics["Condition"]["StringEquals"]["cloudwatch:namespace"] == ["LLMPlatform/GPU", "LLMPlatform/Runtime"]


def test_a_dev_instance_cannot_mark_a_prod_instance_unhealthy():
    dev = instance_policy(stack="dev")
    prod_asg = f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:uuid:autoScalingGroupName/llm-prod-llama-8b-01"
    prod_tags = {"aws:ResourceTag/llm-platform:stack": "prod", "aws:ResourceTag/llm-platform:deployment": "llama-8b"}
    assert not _allows(dev, "autoscaling:SetInstanceHealth", prod_asg, prod_tags)
    assert _allows(instance_policy(), "autoscaling:SetInstanceHealth", prod_asg, prod_tags)


def test_the_dns_firewall_allows_endpoint_names_and_private_zones_only():
    names = access.dns_firewall_allowed_domains(REGION, ["s3", *SERVICES], ["llm.internal"])
    for needed in (f"secretsmanager.{REGION}.amazonaws.com", f"api.ecr.{REGION}.amazonaws.com",
                   f"*.dkr.ecr.{REGION}.amazonaws.com", f"*.s3.{REGION}.amazonaws.com", "llm.internal",
                   "*.llm.internal", f"eks-auth.{REGION}.api.aws", "*.ec2.internal"):
        assert needed in names
    assert not [n for n in names if n in ("*", "*.com", "*.amazonaws.com", "*.aws")]
    # Route 53 Resolver DNS Firewall domain syntax: a leading "*." wildcard at most, no trailing dot
    assert all(n.count("*") <= 1 and (n.startswith("*.") or "*" not in n) and not n.endswith(".") for n in names)
