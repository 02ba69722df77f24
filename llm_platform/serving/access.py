"""Least-privilege policy documents for what runs on an instance and the network it talks through. Pure.

Findings of an outside review this closes:
- VPC endpoints had no policy, and AWS's default allows any principal and any resource: an instance could
  upload prompts to another account's bucket through the S3 endpoint. Now the S3 gateway endpoint admits
  this account's principals to this stack's buckets (read), ECR's layer bucket (image pulls) and the
  Amazon Linux 2023 repositories (the boot's `dnf install docker` fallback) only; interface endpoints
  admit this account's principals to this account's resources, plus, for the few actions AWS evaluates
  without a resource owner (no `aws:ResourceAccount` in the request), this account's principals alone.
- DNS answered any name: with `egress: none`, a Route 53 Resolver DNS Firewall allows only the AWS
  service names the endpoints serve and the VPC's own private names, and blocks every other query
  (NXDOMAIN), so DNS cannot be a tunnel out either.
- GPU instance roles had AmazonSSMManagedInstanceCore (every SSM parameter in the account) and
  CloudWatchAgentServerPolicy (any log group's retention, any metric namespace), ecr:CreateRepository,
  and autoscaling:SetInstanceHealth scoped by deployment name only (a dev instance could mark a prod
  instance unhealthy). Now inline statements: Session Manager's channels, this stack's log groups,
  metric namespaces by `cloudwatch:namespace`, the repositories the stack creates, health of this
  stack's groups by tag. tests/test_access.py runs parliament over every document.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .telemetry import GPU_NAMESPACE, RUNTIME_NAMESPACE

# Actions that carry no resource owner: a StringEquals on aws:ResourceAccount would never match them,
# so they are allowed to this account's principals alone. Reads and AWS-owned objects only; no write
# to another account's resource fits here.
PRINCIPAL_ONLY_ACTIONS = {
    "ecr.api": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability"],       # AWS-owned images (EKS add-ons) are read, never written
    "ecr.dkr": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
    "sts": ["sts:GetCallerIdentity"],
    "monitoring": ["cloudwatch:PutMetricData"],           # metrics always land in the caller's own account
    # reads that name no resource (the agents', the load balancer controller's, a node autoscaler's)
    "ec2": ["ec2:Describe*", "ec2:GetSecurityGroupsForVpc"],
    "autoscaling": ["autoscaling:Describe*"],
    "ssm": ["ssm:GetDocument", "ssm:DescribeDocument", "ssm:ListInstanceAssociations"],   # AWS-owned documents
    "ssmmessages": ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"],
    "ec2messages": ["ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
                    "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply"],
    "elasticloadbalancing": ["elasticloadbalancing:Describe*"],
    "logs": ["logs:DescribeLogGroups"],
}


def ecr_layer_bucket(region: str) -> str:
    """Where ECR keeps image layers; a pull through the ecr.dkr endpoint is redirected to it
    (docs: vpc-endpoints.html#ecr-minimum-s3-perms)."""
    return f"arn:aws:s3:::prod-{region}-starport-layer-bucket"


def al2023_repository_bucket(region: str) -> str:
    """Amazon Linux 2023's package repositories, reached through the S3 gateway endpoint in a VPC without
    internet access (AL2023 user guide, "Using AL2023 in a VPC without internet access")."""
    return f"arn:aws:s3:::al2023-repos-{region}-de612dc2"


def s3_endpoint_policy(account: str, region: str, bucket_arns: Sequence[str]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ThisStacksBucketsByThisAccount", "Effect": "Allow", "Principal": "*",
         "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": [*bucket_arns, *(f"{b}/*" for b in bucket_arns)],
         "Condition": {"StringEquals": {"aws:PrincipalAccount": account, "aws:ResourceAccount": account}}},
        # ECR presigns these requests itself: the principal is ECR's, so no account condition can apply
        {"Sid": "EcrImageLayers", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
         "Resource": [f"{ecr_layer_bucket(region)}/*"]},
        {"Sid": "AmazonLinuxRepositories", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
         "Resource": [f"{al2023_repository_bucket(region)}/*"]},
    ]}


def interface_endpoint_policy(account: str, service: str) -> dict[str, Any]:
    statements = [{"Sid": "ThisAccountsPrincipalsToThisAccountsResources", "Effect": "Allow", "Principal": "*",
                   "Action": "*", "Resource": "*",
                   "Condition": {"StringEquals": {"aws:PrincipalAccount": account, "aws:ResourceAccount": account}}}]
    if PRINCIPAL_ONLY_ACTIONS.get(service):
        statements.append({"Sid": "ActionsWithoutAResourceOwner", "Effect": "Allow", "Principal": "*",
                           "Action": PRINCIPAL_ONLY_ACTIONS[service], "Resource": "*",
                           "Condition": {"StringEquals": {"aws:PrincipalAccount": account}}})
    if service == "ssm":
        # AWS's public parameters (AMI ids a node autoscaler resolves) are owned by AWS, not this account
        statements.append({"Sid": "AwsPublicParameters", "Effect": "Allow", "Principal": "*",
                           "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
                           # their ARNs have an empty account field, which "*" matches
                           "Resource": "arn:aws:ssm:*:*:parameter/aws/service/*",
                           "Condition": {"StringEquals": {"aws:PrincipalAccount": account}}})
    return {"Version": "2012-10-17", "Statement": statements}


def endpoint_domains(region: str, service: str) -> list[str]:
    """The DNS names an interface endpoint (with private DNS) or the S3 gateway endpoint answers for."""
    if service == "s3":       # the gateway endpoint's names, and an interface endpoint's own names
        return [f"s3.{region}.amazonaws.com", f"*.s3.{region}.amazonaws.com", f"s3.dualstack.{region}.amazonaws.com",
                f"*.s3.dualstack.{region}.amazonaws.com", f"*.s3.{region}.vpce.amazonaws.com"]
    if service == "ecr.api":
        return [f"api.ecr.{region}.amazonaws.com"]
    if service == "ecr.dkr":
        return [f"*.dkr.ecr.{region}.amazonaws.com"]
    if service == "eks-auth":
        return [f"eks-auth.{region}.api.aws"]
    return [f"{service}.{region}.amazonaws.com"]


def dns_firewall_allowed_domains(region: str, services: Iterable[str], private_domains: Iterable[str]) -> list[str]:
    """What the VPC may resolve when egress is none: the endpoints' names, EC2's internal host names (EKS
    names nodes by them), the EKS API's private names, and the stack's own private zones."""
    names = {d for s in services for d in endpoint_domains(region, s)}
    names |= {f"*.{region}.compute.internal", "*.ec2.internal", f"*.{region}.eks.amazonaws.com",
              f"*.gr7.{region}.eks.amazonaws.com"}
    for zone in private_domains:
        zone = zone.rstrip(".")
        names |= {zone, f"*.{zone}"}
    return sorted(names)


# --- the GPU instance role ----------------------------------------------------------------------

def instance_statements(*, account: str, region: str, stack: str, deployment: str, log_group_arns: Sequence[str],
                        parameter_arns: Sequence[str], repository_arns: Sequence[str]) -> list[dict[str, Any]]:
    """What an inference instance does besides reading its model and keys (which model_store/keys grant):
    Session Manager (instead of SSH), the CloudWatch agent, ECR pulls through the cache into repositories
    the stack created, and marking its own group's instance Unhealthy."""
    asg = f"arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/llm-{stack}-{deployment}-*"
    return [
        # Session Manager: the agent's registration and its message channels (AmazonSSMManagedInstanceCore
        # without its account-wide ssm:GetParameter(s) and association/inventory writes)
        # (UpdateInstanceInformation takes no aws:ResourceTag condition: one would deny the agent outright)
        {"Sid": "SessionManagerRegistration", "Effect": "Allow",
         "Action": ["ssm:UpdateInstanceInformation", "ssm:ListInstanceAssociations"],
         "Resource": f"arn:aws:ec2:{region}:{account}:instance/*"},
        {"Sid": "SessionManagerChannels", "Effect": "Allow",
         "Action": PRINCIPAL_ONLY_ACTIONS["ssmmessages"] + PRINCIPAL_ONLY_ACTIONS["ec2messages"], "Resource": "*"},
        {"Sid": "OwnParameters", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": list(parameter_arns)},
        # the CloudWatch agent: its own log groups (no retention changes, no new groups) ...
        {"Sid": "OwnLogGroups", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
         "Resource": [*log_group_arns, *(f"{g}:log-stream:*" for g in log_group_arns)]},
        # ... metrics in the platform's namespaces only ...
        {"Sid": "OwnMetricNamespaces", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": [GPU_NAMESPACE, RUNTIME_NAMESPACE]}}},
        # ... and its Auto Scaling group name (append_dimensions), which EC2 only serves account-wide
        {"Sid": "InstanceTags", "Effect": "Allow", "Action": ["ec2:DescribeTags"], "Resource": "*"},
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "EcrPullFromOwnRepositories", "Effect": "Allow",
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
         "Resource": list(repository_arns)},
        # the cache fills a repository the stack created; the Service Authorization Reference lists no
        # resource type for this action (a repository ARN would never match), and no CreateRepository
        {"Sid": "EcrPullThroughCacheImport", "Effect": "Allow", "Action": ["ecr:BatchImportUpstreamImage"],
         "Resource": "*"},
        # this stack's group of this deployment: same deployment names in dev and prod cannot cross
        {"Sid": "MarkOwnGroupUnhealthy", "Effect": "Allow", "Action": ["autoscaling:SetInstanceHealth"],
         "Resource": asg,
         "Condition": {"StringEquals": {"aws:ResourceTag/llm-platform:stack": stack,
                                        "aws:ResourceTag/llm-platform:deployment": deployment}}},
    ]


def flow_log_statements(log_group_arn: str) -> list[dict[str, Any]]:
    """The VPC flow-log delivery role: DescribeLogGroups only takes effect on Resource "*"."""
    return [{"Sid": "DeliverToTheFlowLogGroup", "Effect": "Allow",
             "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
             "Resource": [log_group_arn, f"{log_group_arn}:*"]},
            {"Sid": "DescribeLogGroups", "Effect": "Allow", "Action": ["logs:DescribeLogGroups"], "Resource": "*"}]
