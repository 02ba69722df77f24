"""PrivateNetwork: the VPC the inference fleet lives in.

Defaults, as awsx's Vpc states its own:
- DNS support and hostnames on (interface endpoints need private DNS);
- one private subnet per AZ (`network.availability_zones`: a count or names), CIDRs from
  components/addressing.py; no instance in them gets a public IP;
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
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import pulumi
import pulumi_aws as aws

from llm_platform.serving.addressing import subnet_layout

# ec2: the CloudWatch agent learns its Auto Scaling group through ec2:DescribeTags
INTERFACE_ENDPOINTS = ("secretsmanager", "kms", "ecr.api", "ecr.dkr", "logs", "monitoring", "ssm", "ssmmessages",
                       "ec2messages", "sts", "autoscaling", "ec2")


class PrivateNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, *, stack: str, cidr: str, availability_zones: Union[int, Sequence[str]],
                 egress: str, kms_key_arn: pulumi.Input[str], log_retention_days: int, protect: bool,
                 extra_endpoints: Sequence[str] = (), opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:network:PrivateNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        if isinstance(availability_zones, int):
            count = availability_zones
            zones = aws.get_availability_zones_output(state="available",
                                                      opts=pulumi.InvokeOutputOptions(parent=self)).names
            az = [zones.apply(lambda names, i=i: names[i]) for i in range(count)]
        else:
            count, az = len(availability_zones), list(availability_zones)
        layout = subnet_layout(cidr, count, egress)
        tags = {"llm-platform:stack": stack}

        self.vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=cidr, enable_dns_support=True, enable_dns_hostnames=True,
                               tags={**tags, "Name": f"llm-{stack}"}, opts=child)
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=self.vpc.id, ingress=[], egress=[],
                                     tags={**tags, "Name": f"llm-{stack}-default-unused"}, opts=child)

        self.private_subnets, self.route_tables = [], []
        for i, block in enumerate(layout.private):
            subnet = aws.ec2.Subnet(f"{name}-private-{i}", vpc_id=self.vpc.id, cidr_block=block, availability_zone=az[i],
                                    map_public_ip_on_launch=False,
                                    tags={**tags, "Name": f"llm-{stack}-private-{i}", "llm-platform:tier": "inference"},
                                    opts=child)
            table = aws.ec2.RouteTable(f"{name}-private-{i}", vpc_id=self.vpc.id,
                                       tags={**tags, "Name": f"llm-{stack}-private-{i}"}, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=table.id, opts=child)
            self.private_subnets.append(subnet)
            self.route_tables.append(table)

        if egress == "nat":
            self._nat_gateways(name, stack, layout.public, az, tags, child)

        self.endpoint_sg = aws.ec2.SecurityGroup(f"{name}-endpoints", vpc_id=self.vpc.id,
                                                 description="VPC interface endpoints: HTTPS from inside the VPC",
                                                 tags={**tags, "Name": f"llm-{stack}-endpoints"}, opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-endpoints-https", security_group_id=self.endpoint_sg.id,
                                         ip_protocol="tcp", from_port=443, to_port=443, cidr_ipv4=cidr,
                                         description="HTTPS from the VPC", opts=child)
        self.endpoints = {}
        for service in (*INTERFACE_ENDPOINTS, *extra_endpoints):
            self.endpoints[service] = aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}", vpc_id=self.vpc.id, vpc_endpoint_type="Interface",
                service_name=region.apply(lambda r, s=service: f"com.amazonaws.{r}.{s}"), private_dns_enabled=True,
                subnet_ids=[s.id for s in self.private_subnets], security_group_ids=[self.endpoint_sg.id],
                tags={**tags, "Name": f"llm-{stack}-{service}"}, opts=child)
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=self.vpc.id, vpc_endpoint_type="Gateway",
            service_name=region.apply(lambda r: f"com.amazonaws.{r}.s3"),
            route_table_ids=[t.id for t in self.route_tables], tags={**tags, "Name": f"llm-{stack}-s3"}, opts=child)

        self.flow_log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs", name=f"/llm-platform/{stack}/vpc-flow-logs", retention_in_days=log_retention_days,
            kms_key_id=kms_key_arn, tags=tags, opts=pulumi.ResourceOptions(parent=self, protect=protect))
        role = aws.iam.Role(f"{name}-flow-logs", assume_role_policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "vpc-flow-logs.amazonaws.com"}}]}),
            tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams",
                                           "logs:DescribeLogGroups"],
                "Resource": [self.flow_log_group.arn, pulumi.Output.concat(self.flow_log_group.arn, ":*")]}]}),
            opts=child)
        aws.ec2.FlowLog(f"{name}-flow-log", vpc_id=self.vpc.id, traffic_type="ALL",
                        log_destination_type="cloud-watch-logs", log_destination=self.flow_log_group.arn,
                        iam_role_arn=role.arn, max_aggregation_interval=60, tags=tags, opts=child)

        self.vpc_id = self.vpc.id
        self.private_subnet_ids = [s.id for s in self.private_subnets]
        self.register_outputs({"vpc_id": self.vpc.id, "private_subnet_ids": self.private_subnet_ids,
                               "s3_endpoint_id": self.s3_endpoint.id})

    def _nat_gateways(self, name, stack, public_blocks, az, tags, child):
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags={**tags, "Name": f"llm-{stack}"}, opts=child)
        public_table = aws.ec2.RouteTable(f"{name}-public", vpc_id=self.vpc.id,
                                          tags={**tags, "Name": f"llm-{stack}-public-nat-only"}, opts=child)
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_table.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=igw.id, opts=child)
        for i, block in enumerate(public_blocks):
            subnet = aws.ec2.Subnet(f"{name}-public-{i}", vpc_id=self.vpc.id, cidr_block=block, availability_zone=az[i],
                                    map_public_ip_on_launch=False,
                                    tags={**tags, "Name": f"llm-{stack}-nat-{i}", "llm-platform:tier": "nat-only"},
                                    opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_table.id,
                                          opts=child)
            eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags={**tags, "Name": f"llm-{stack}-nat-{i}"}, opts=child)
            nat = aws.ec2.NatGateway(f"{name}-nat-{i}", subnet_id=subnet.id, allocation_id=eip.id,
                                     tags={**tags, "Name": f"llm-{stack}-nat-{i}"}, opts=child)
            aws.ec2.Route(f"{name}-private-{i}-egress", route_table_id=self.route_tables[i].id,
                          destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.id, opts=child)
