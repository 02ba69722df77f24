"""PrivateNetwork: the VPC the inference fleet lives in.

Defaults, as awsx's Vpc states its own:
- DNS support and hostnames on (interface endpoints need private DNS);
- one private subnet per AZ (`network.availability_zones`: a count or names), CIDRs from
  llm_platform/serving/addressing.py; no instance in them gets a public IP;
- egress `none` (the default): no internet gateway and no NAT at all. AWS APIs are reached
  through interface endpoints (Secrets Manager, KMS, ECR api and dkr, CloudWatch Logs and
  monitoring, SSM, ssmmessages, ec2messages, STS, Auto Scaling, EC2) behind an endpoint security group
  that admits HTTPS from the VPC only, and S3 through a gateway endpoint. The endpoints are made
  with egress `nat` too, so AWS traffic never leaves the VPC either way;
- egress `nat`: small public subnets holding only one NAT gateway per AZ (no single-AZ failure
  takes egress down), each private route table pointing at its own AZ's gateway;
- the default security group is taken over with no rules, so nothing can use it;
- VPC flow logs (all traffic, 1-minute aggregation) to a CMK-encrypted log group with the
  stack's retention.
- every interface endpoint carries a policy: this account's principals, this account's resources
  (plus, for the few actions without a resource owner, this account's principals alone); AWS's
  default endpoint policy allows any principal and any resource. The S3 gateway endpoint's policy
  names this stack's buckets, so the platform sets it once the model store exists
  (`s3_endpoint_policy`). Policies: llm_platform/serving/access.py.
- egress `none`: a Route 53 Resolver DNS Firewall on the VPC allows only the names the endpoints
  answer for, EC2's and EKS's internal names and `private_domains`, and answers NXDOMAIN to every
  other query (fail closed: the firewall's fail-open is disabled), so DNS is no tunnel out either.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from llm_platform.serving.access import (
    dns_firewall_allowed_domains,
    flow_log_statements,
    interface_endpoint_policy,
    s3_endpoint_policy,
)
from llm_platform.serving.addressing import subnet_layout

# ec2: the CloudWatch agent learns its Auto Scaling group through ec2:DescribeTags
INTERFACE_ENDPOINTS = ("secretsmanager", "kms", "ecr.api", "ecr.dkr", "logs", "monitoring", "ssm", "ssmmessages",
                       "ec2messages", "sts", "autoscaling", "ec2")
ZONE_LETTERS = "abcdefghijklmnop"


@dataclass(frozen=True)
class PrivateNetworkArgs:
    stack: str                                         # names (Name tags, the flow-log group)
    kms_key_arn: pulumi.Input[str]                     # encrypts the flow-log group
    cidr: str = "10.40.0.0/16"
    availability_zones: int | Sequence[str] = 2  # a count (the region's first N available) or zone names
    egress: str = "none"                               # "none": no route out at all; "nat": a NAT gateway per zone
    log_retention_days: int = 90
    protect: bool = False
    extra_endpoints: Sequence[str] = ()                # further interface endpoints (e.g. eks-auth)
    private_domains: Sequence[str] = ()                # private zones the VPC resolves (the API domain)


def zone_roles(availability_zones: int | Sequence[str]) -> list[str]:
    """The role each zone's subnets are named by: the zone's letter (us-east-1a -> "a"); with a count, the
    letter of its position among the region's available zones. Never a bare index."""
    if isinstance(availability_zones, int):
        return list(ZONE_LETTERS[:availability_zones])
    roles = [z.rsplit("-", 1)[-1].lstrip("0123456789") or z for z in availability_zones]
    return roles if len(set(roles)) == len(roles) else [z.replace(".", "-") for z in availability_zones]


class PrivateNetwork(pulumi.ComponentResource):
    """Outputs: vpc_id, vpc_cidr, private_subnet_ids, private_route_table_ids, s3_endpoint_id,
    s3_prefix_list_id, endpoint_security_group_id, flow_log_group_name."""

    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    private_subnet_ids: list[pulumi.Output[str]]
    private_route_table_ids: list[pulumi.Output[str]]
    s3_endpoint_id: pulumi.Output[str]
    s3_prefix_list_id: pulumi.Output[str]
    endpoint_security_group_id: pulumi.Output[str]
    flow_log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:network:PrivateNetwork", name, None, opts)
        stack, cidr = args.stack, args.cidr
        child = pulumi.ResourceOptions(parent=self)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        if isinstance(args.availability_zones, int):
            count = args.availability_zones
            zones = aws.get_availability_zones_output(state="available",
                                                      opts=pulumi.InvokeOutputOptions(parent=self)).names
            az = [zones.apply(lambda names, i=i: names[i]) for i in range(count)]
        else:
            count, az = len(args.availability_zones), list(args.availability_zones)
        roles = zone_roles(args.availability_zones)
        layout = subnet_layout(cidr, count, args.egress)
        tags = {"llm-platform:stack": stack}

        def renamed(i: int, role: str) -> pulumi.ResourceOptions:
            # subnets were once named by index (<name>-private-0): the alias keeps them in place
            return pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name=f"{name}-{role}-{i}")])

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=cidr, enable_dns_support=True, enable_dns_hostnames=True,
                          tags={**tags, "Name": f"llm-{stack}"}, opts=child)
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
                                     tags={**tags, "Name": f"llm-{stack}-default-unused"}, opts=child)

        # (Name tags keep the positional form existing stacks carry: changing them would be an update for nothing)
        subnets, tables = [], []
        for i, block in enumerate(layout.private):
            z = roles[i]
            subnet = aws.ec2.Subnet(f"{name}-private-{z}", vpc_id=vpc.id, cidr_block=block, availability_zone=az[i],
                                    map_public_ip_on_launch=False,
                                    tags={**tags, "Name": f"llm-{stack}-private-{i}", "llm-platform:tier": "inference"},
                                    opts=renamed(i, "private"))
            table = aws.ec2.RouteTable(f"{name}-private-{z}", vpc_id=vpc.id,
                                       tags={**tags, "Name": f"llm-{stack}-private-{i}"}, opts=renamed(i, "private"))
            aws.ec2.RouteTableAssociation(f"{name}-private-{z}", subnet_id=subnet.id, route_table_id=table.id,
                                          opts=renamed(i, "private"))
            subnets.append(subnet)
            tables.append(table)

        if args.egress == "nat":
            self._nat_gateways(name, stack, vpc, layout.public, az, roles, tables, tags)

        endpoint_sg = aws.ec2.SecurityGroup(f"{name}-endpoints", vpc_id=vpc.id,
                                            description="VPC interface endpoints: HTTPS from inside the VPC",
                                            tags={**tags, "Name": f"llm-{stack}-endpoints"}, opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-endpoints-https", security_group_id=endpoint_sg.id,
                                         ip_protocol="tcp", from_port=443, to_port=443, cidr_ipv4=cidr,
                                         description="HTTPS from the VPC", opts=child)
        services = (*INTERFACE_ENDPOINTS, *args.extra_endpoints)
        self._s3_interface: aws.ec2.VpcEndpoint | None = None
        for service in services:
            # an S3 interface endpoint (EKS: pods reach S3 inside the VPC's CIDR) is addressed by its own DNS
            # names: private DNS would take s3.<region> from the gateway endpoint; its policy comes with the
            # gateway's, once the buckets exist
            s3 = service == "s3"
            endpoint = aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}{'-interface' if s3 else ''}", vpc_id=vpc.id,
                vpc_endpoint_type="Interface",
                service_name=region.apply(lambda r, s=service: f"com.amazonaws.{r}.{s}"), private_dns_enabled=not s3,
                subnet_ids=[s.id for s in subnets], security_group_ids=[endpoint_sg.id],
                policy=None if s3 else account.apply(lambda a, s=service: json.dumps(interface_endpoint_policy(a, s))),
                tags={**tags, "Name": f"llm-{stack}-{service}{'-interface' if s3 else ''}"}, opts=child)
            if s3:
                self._s3_interface = endpoint
        s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
            service_name=region.apply(lambda r: f"com.amazonaws.{r}.s3"),
            route_table_ids=[t.id for t in tables], tags={**tags, "Name": f"llm-{stack}-s3"}, opts=child)

        flow_log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs", name=f"/llm-platform/{stack}/vpc-flow-logs", retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn, tags=tags, opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        role = aws.iam.Role(f"{name}-flow-logs", assume_role_policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "vpc-flow-logs.amazonaws.com"}}]}),
            tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, policy=flow_log_group.arn.apply(
            lambda arn: json.dumps({"Version": "2012-10-17", "Statement": flow_log_statements(arn)})), opts=child)
        aws.ec2.FlowLog(f"{name}-flow-log", vpc_id=vpc.id, traffic_type="ALL",
                        log_destination_type="cloud-watch-logs", log_destination=flow_log_group.arn,
                        iam_role_arn=role.arn, max_aggregation_interval=60, tags=tags, opts=child)

        if args.egress == "none":
            self._dns_firewall(name, stack, vpc, region, tuple(dict.fromkeys(("s3", *services))),
                               args.private_domains, tags)

        self._region, self._account, self._s3_endpoint = region, account, s3_endpoint
        self.vpc_id, self.vpc_cidr = vpc.id, cidr
        self.private_subnet_ids = [s.id for s in subnets]
        self.private_route_table_ids = [t.id for t in tables]
        self.s3_endpoint_id, self.s3_prefix_list_id = s3_endpoint.id, s3_endpoint.prefix_list_id
        self.endpoint_security_group_id = endpoint_sg.id
        self.flow_log_group_name = flow_log_group.name
        self.register_outputs({"vpc_id": self.vpc_id, "vpc_cidr": self.vpc_cidr,
                               "private_subnet_ids": self.private_subnet_ids,
                               "private_route_table_ids": self.private_route_table_ids,
                               "s3_endpoint_id": self.s3_endpoint_id, "s3_prefix_list_id": self.s3_prefix_list_id,
                               "endpoint_security_group_id": self.endpoint_security_group_id,
                               "flow_log_group_name": self.flow_log_group_name})

    @property
    def s3_interface_endpoint_id(self) -> pulumi.Output[str] | None:
        return self._s3_interface.id if self._s3_interface is not None else None

    def s3_interface_url(self) -> pulumi.Output[str] | None:
        """The endpoint URL a client inside the VPC gives for S3 through the interface endpoint (AWS CLI:
        AWS_ENDPOINT_URL_S3): its endpoint-specific name, https://bucket.<vpce-id>.s3.<region>.vpce.amazonaws.com."""
        if self._s3_interface is None:
            return None
        return pulumi.Output.format("https://bucket.{0}.s3.{1}.vpce.amazonaws.com", self._s3_interface.id, self._region)

    def s3_endpoint_policy(self, name: str,
                           bucket_arns: Sequence[pulumi.Input[str]]) -> list[aws.ec2.VpcEndpointPolicy]:
        """The S3 endpoints' policy, once the buckets exist (the model store's policy names the endpoints, so
        they cannot name the bucket at creation)."""
        policy = pulumi.Output.all(self._account, self._region, *bucket_arns).apply(
            lambda a: json.dumps(s3_endpoint_policy(a[0], a[1], a[2:])))
        out = [aws.ec2.VpcEndpointPolicy(name, vpc_endpoint_id=self._s3_endpoint.id, policy=policy,
                                         opts=pulumi.ResourceOptions(parent=self))]
        if self._s3_interface is not None:
            out.append(aws.ec2.VpcEndpointPolicy(f"{name}-interface", vpc_endpoint_id=self._s3_interface.id,
                                                 policy=policy, opts=pulumi.ResourceOptions(parent=self)))
        return out

    def _dns_firewall(self, name, stack, vpc, region, services, private_domains, tags):
        child = pulumi.ResourceOptions(parent=self)
        allowed = aws.route53.ResolverFirewallDomainList(
            f"{name}-dns-allowed", name=f"llm-{stack}-allowed",
            domains=region.apply(lambda r: dns_firewall_allowed_domains(r, services, private_domains)),
            tags=tags, opts=child)
        everything = aws.route53.ResolverFirewallDomainList(
            f"{name}-dns-everything", name=f"llm-{stack}-everything", domains=["*"], tags=tags, opts=child)
        group = aws.route53.ResolverFirewallRuleGroup(f"{name}-dns-firewall", name=f"llm-{stack}-egress-none",
                                                      tags=tags, opts=child)
        aws.route53.ResolverFirewallRule(f"{name}-dns-allow", name="allow-aws-endpoints-and-private-zones",
                                         firewall_rule_group_id=group.id, firewall_domain_list_id=allowed.id,
                                         action="ALLOW", priority=100, opts=child)
        aws.route53.ResolverFirewallRule(f"{name}-dns-block", name="block-everything-else",
                                         firewall_rule_group_id=group.id, firewall_domain_list_id=everything.id,
                                         action="BLOCK", block_response="NXDOMAIN", priority=200, opts=child)
        aws.route53.ResolverFirewallRuleGroupAssociation(
            f"{name}-dns-firewall", name=f"llm-{stack}", firewall_rule_group_id=group.id, vpc_id=vpc.id,
            priority=101, mutation_protection="ENABLED", tags=tags, opts=child)
        # if the firewall cannot answer, refuse rather than resolve unfiltered
        aws.route53.ResolverFirewallConfig(f"{name}-dns-firewall", resource_id=vpc.id, firewall_fail_open="DISABLED",
                                           opts=child)

    def _nat_gateways(self, name, stack, vpc, public_blocks, az, roles, private_tables, tags):
        child = pulumi.ResourceOptions(parent=self)

        def renamed(old: str) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name=old)])

        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={**tags, "Name": f"llm-{stack}"}, opts=child)
        public_table = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id,
                                          tags={**tags, "Name": f"llm-{stack}-public-nat-only"}, opts=child)
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_table.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=igw.id, opts=child)
        for i, block in enumerate(public_blocks):
            z = roles[i]
            subnet = aws.ec2.Subnet(f"{name}-public-{z}", vpc_id=vpc.id, cidr_block=block, availability_zone=az[i],
                                    map_public_ip_on_launch=False,
                                    tags={**tags, "Name": f"llm-{stack}-nat-{i}", "llm-platform:tier": "nat-only"},
                                    opts=renamed(f"{name}-public-{i}"))
            aws.ec2.RouteTableAssociation(f"{name}-public-{z}", subnet_id=subnet.id, route_table_id=public_table.id,
                                          opts=renamed(f"{name}-public-{i}"))
            eip = aws.ec2.Eip(f"{name}-nat-{z}", domain="vpc", tags={**tags, "Name": f"llm-{stack}-nat-{i}"},
                              opts=renamed(f"{name}-nat-{i}"))
            nat = aws.ec2.NatGateway(f"{name}-nat-{z}", subnet_id=subnet.id, allocation_id=eip.id,
                                     tags={**tags, "Name": f"llm-{stack}-nat-{i}"}, opts=renamed(f"{name}-nat-{i}"))
            aws.ec2.Route(f"{name}-private-{z}-egress", route_table_id=private_tables[i].id,
                          destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.id,
                          opts=renamed(f"{name}-private-{i}-egress"))
