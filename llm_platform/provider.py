"""The components for other languages: a Pulumi component provider (pulumi.provider.experimental) whose schema
the SDK infers from the type annotations below, so TypeScript, Go, C#, Java and YAML programs can
`pulumi package add` this repository's provider/ directory and use them.

Two components, with inputs a schema can carry (strings, numbers, lists, maps, plain records):
- PrivateNetwork: the air-gapped VPC (subnets per zone, interface and S3 endpoints, flow logs) and its KMS key;
- Ec2LlmPlatform: the whole EC2 platform for a list of models, each planned here by llm_platform.sizing.

This module deliberately has no `from __future__ import annotations`: the analyzer reads real types.
"""
from typing import Required, TypedDict

import pulumi

from llm_platform.components import (
    ApiOptions,
    Ec2Platform,
    Ec2PlatformArgs,
    ImageOptions,
    ModelSource,
    MonitoringOptions,
    NetworkOptions,
    PlatformKeys,
    PlatformKeysArgs,
    PrivateNetworkArgs,
)
from llm_platform.components import PrivateNetwork as _Network
from llm_platform.sizing.single import plan_deployment

PROVIDER_NAME = "llm-platform"


class PrivateNetworkInputs(TypedDict, total=False):
    """Inputs of PrivateNetwork."""
    cidr: pulumi.Input[str]
    """VPC CIDR (RFC 1918, /16 to /22), default 10.40.0.0/16."""
    availability_zones: pulumi.Input[int]
    """How many of the region's zones get a private subnet (default 2)."""
    egress: pulumi.Input[str]
    """none (default: no route out at all) or nat (a NAT gateway per zone)."""
    log_retention_days: pulumi.Input[int]
    """Flow-log retention in days (default 90)."""
    protect: pulumi.Input[bool]
    """Protect the key and the flow-log group from deletion."""


class PrivateNetwork(pulumi.ComponentResource):
    """A private VPC for GPU inference: no internet path by default, AWS APIs through interface endpoints, S3
    through a gateway endpoint, VPC flow logs encrypted with its own KMS key."""

    vpc_id: pulumi.Output[str]
    """The VPC."""
    private_subnet_ids: pulumi.Output[list[str]]
    """One private subnet per zone."""
    s3_prefix_list_id: pulumi.Output[str]
    """The S3 gateway endpoint's prefix list (for security-group egress rules)."""
    kms_key_arn: pulumi.Output[str]
    """The customer managed key that encrypts the flow logs."""

    def __init__(self, name: str, args: PrivateNetworkInputs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{PROVIDER_NAME}:index:PrivateNetwork", name, {}, opts)
        stack = pulumi.get_stack()
        keys = PlatformKeys(f"{name}-keys", PlatformKeysArgs(stack=stack, clients=(),
                                                             protect=bool(args.get("protect", False))),
                            pulumi.ResourceOptions(parent=self))
        net = _Network(f"{name}-network", PrivateNetworkArgs(
            stack=stack, kms_key_arn=keys.key_arn, cidr=args.get("cidr", "10.40.0.0/16"),
            availability_zones=args.get("availability_zones", 2), egress=args.get("egress", "none"),
            log_retention_days=args.get("log_retention_days", 90), protect=bool(args.get("protect", False))),
            pulumi.ResourceOptions(parent=self))
        self.vpc_id = net.vpc_id
        self.private_subnet_ids = pulumi.Output.all(*net.private_subnet_ids)
        self.s3_prefix_list_id = net.s3_prefix_list_id
        self.kms_key_arn = keys.key_arn
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids,
                               "s3_prefix_list_id": self.s3_prefix_list_id, "kms_key_arn": self.kms_key_arn})


class ModelArgs(TypedDict, total=False):
    """One model to serve: the fields of a stack's models[] entry that a program in another language sets."""
    name: Required[str]
    """Served model name, lowercase DNS label (e.g. llama-8b)."""
    model: Required[str]
    """Hugging Face repository (e.g. meta-llama/Llama-3.1-8B-Instruct)."""
    runtime: str
    """vllm (default), ollama or tgi."""
    precision: str
    """bf16, fp16, fp8, awq, ... (default: the model's own)."""
    max_model_len: int
    """Longest prompt + completion in tokens."""
    concurrency: int
    """Sequences one replica runs at once."""
    replicas: int
    """Fixed replica count."""
    revision: str
    """Pinned Hugging Face commit (required in prod)."""
    manifest: str
    """SHA256SUMS file name staged next to the weights."""
    manifest_sha256: str
    """The manifest's pinned SHA-256 (required in prod)."""
    provenance: dict[str, str]
    """source, license, approved_by, review_status (required in prod)."""


class Ec2LlmPlatformArgs(TypedDict, total=False):
    """Inputs of Ec2LlmPlatform."""
    environment: str
    """dev, staging or prod (default prod): which rules the planner and the platform apply."""
    models: Required[list[ModelArgs]]
    """The models to serve."""
    clients: Required[list[str]]
    """API client names; each gets its own generated key in Secrets Manager."""
    allowed_client_cidrs: Required[list[str]]
    """Networks that may reach the internal HTTPS endpoint."""
    cidr: str
    """VPC CIDR (default 10.40.0.0/16)."""
    availability_zones: int
    """Zones (default 2; prod needs 2 or more)."""
    domain: str
    """Private DNS domain of the endpoints (default llm.internal)."""
    alarm_email: str
    """Who gets the alarms."""
    docker_hub_credential_arn: str
    """ecr-pullthroughcache/... secret for the Docker Hub pull-through cache rule."""


class Ec2LlmPlatform(pulumi.ComponentResource):
    """Self-hosted LLMs on EC2: private VPC, KMS and client keys, model store, image cache, internal ALB with WAF
    and TLS, per model a GPU Auto Scaling group sized by the planner with its alarms, and a dashboard."""

    endpoints: pulumi.Output[dict[str, str]]
    """Model name -> OpenAI-compatible base URL."""
    model_bucket: pulumi.Output[str]
    """Where to stage the weights (models/<name>/<revision>/)."""
    dashboard_url: pulumi.Output[str]
    """The CloudWatch dashboard."""
    load_balancer_dns: pulumi.Output[str]
    """The internal ALB."""
    instance_types: pulumi.Output[dict[str, str]]
    """Model name -> the GPU instance type the planner chose."""

    def __init__(self, name: str, args: Ec2LlmPlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{PROVIDER_NAME}:index:Ec2LlmPlatform", name, {}, opts)
        environment = args.get("environment", "prod")
        sources = []
        for m in args.get("models", []):
            spec: dict[str, object] = {k: v for k, v in m.items() if k not in ("manifest", "manifest_sha256")}
            manifest = m.get("manifest", "SHA256SUMS") if m.get("manifest_sha256") else None
            if manifest:
                spec["checksums"] = {"manifest": manifest, "sha256": m["manifest_sha256"]}
            plan = plan_deployment(spec, environment=environment, platform="ec2")
            sources.append(ModelSource(plan=plan, manifest=manifest, manifest_sha256=m.get("manifest_sha256"),
                                       provenance=m.get("provenance")))
        platform = Ec2Platform(f"{name}-platform", Ec2PlatformArgs(
            stack=pulumi.get_stack(), environment=environment, deployments=tuple(sources),
            network=NetworkOptions(allowed_client_cidrs=tuple(args.get("allowed_client_cidrs", [])),
                                   cidr=args.get("cidr", "10.40.0.0/16"),
                                   availability_zones=args.get("availability_zones", 2)),
            api=ApiOptions(clients=tuple(args.get("clients", [])), domain=args.get("domain", "llm.internal")),
            monitoring=MonitoringOptions(alarm_email=args.get("alarm_email")),
            images=ImageOptions(docker_hub_credential_arn=args.get("docker_hub_credential_arn")),
            protect=environment == "prod"), pulumi.ResourceOptions(parent=self))
        self.endpoints = pulumi.Output.from_input(platform.endpoints)
        self.model_bucket = platform.exports["model_bucket"]
        self.dashboard_url = platform.exports["dashboard_url"]
        self.load_balancer_dns = platform.exports["load_balancer_dns"]
        self.instance_types = pulumi.Output.from_input({s.plan.name: s.plan.instance_type for s in sources})
        self.register_outputs({"endpoints": self.endpoints, "model_bucket": self.model_bucket,
                               "dashboard_url": self.dashboard_url, "load_balancer_dns": self.load_balancer_dns,
                               "instance_types": self.instance_types})


COMPONENTS = [PrivateNetwork, Ec2LlmPlatform]


def main() -> None:
    """The provider's entry point (provider/__main__.py): serves the components to the Pulumi engine."""
    from pulumi.provider.experimental import component_provider_host
    component_provider_host(components=COMPONENTS, name=PROVIDER_NAME, namespace="llm-platform")
