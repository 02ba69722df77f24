"""One component per platform, each with the same small surface:

    endpoints     deployment -> OpenAI base URL
    deployments   deployment -> ModelDeployment
    ca_cert_pem   the CA clients trust (internal CA or the local proxies' certificate), or None
    exports       what a stack program exports (bucket, key secret ARNs, dashboard, cluster, ...)

Ec2Platform:    PlatformKeys -> PrivateNetwork -> ModelStore, ImageCache -> Monitoring -> InternalLoadBalancer
                -> per model a ModelDeployment (GpuInstanceGroup + alarms) -> the dashboard.
EksPlatform:    PlatformKeys -> PrivateNetwork -> ModelStore, ImageCache -> GpuCluster -> per model a
                ModelDeployment (KubernetesServing) behind an internal NLB, names in a private zone.
DockerPlatform: DockerHost (network, keys, TLS, images) -> per model a ModelDeployment (runtime + proxy).

The platforms take DeploymentPlans (llm_platform.sizing) and never re-size them. `legacy_names=True` adds the
aliases that keep stacks made by the earlier single `LlmPlatform` component in place (its children were named
`keys`, `network`, `<model>`, ...): our own stack program sets it; a new program has no use for it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from llm_platform.sizing.planner import DeploymentPlan
from llm_platform.verify.jobs import GATE_CLIENT

from .deployment import Ec2Serving, ModelDeployment, ModelDeploymentArgs
from .eks import GpuCluster, GpuClusterArgs
from .fleet_capacity import CapacityOptions
from .gate import DeployGate, DeployGateArgs
from .gpu_fleet import GpuInstanceGroupArgs
from .images import ImageCache, ImageCacheArgs, needed_upstreams
from .k8s_serving import KubernetesServingArgs
from .keys import PlatformKeys, PlatformKeysArgs
from .load_balancer import InternalLoadBalancer, InternalLoadBalancerArgs, internal_certificate
from .local_docker import LOOPBACK, DockerHost, DockerHostArgs
from .model_store import ModelStore, ModelStoreArgs, model_prefix
from .monitoring import AlarmArgs, DashboardPanel, Monitoring, MonitoringArgs
from .network import PrivateNetwork, PrivateNetworkArgs

LEGACY_ROOT_TYPE = "llm-platform:index:LlmPlatform"
# EKS Pod Identity hands out credentials through eks-auth; the load balancer controller calls ELB
# (EKS user guide, "Deploy private clusters")
# s3: pods reach the model store inside the VPC's CIDR (their NetworkPolicy allows nothing else but DNS and
# the Pod Identity agent), through an S3 interface endpoint addressed by its own name
EKS_ENDPOINTS = ("eks-auth", "elasticloadbalancing", "s3")


@dataclass(frozen=True)
class ModelSource:
    """A planned deployment and what pins its weights."""
    plan: DeploymentPlan
    manifest: str | None = None                 # SHA256SUMS file in models/<name>/<revision>/
    manifest_sha256: str | None = None          # the manifest's own pinned digest
    provenance: Mapping[str, str] | None = None
    capacity: CapacityOptions | None = None            # fallbacks, warm pool, reservations, model snapshot (ec2)
    load: Mapping[str, Any] | None = None          # the model entry's `load`: what the deploy gate drives


@dataclass(frozen=True)
class NetworkOptions:
    allowed_client_cidrs: Sequence[str]
    cidr: str = "10.40.0.0/16"
    availability_zones: int | Sequence[str] = 2
    egress: str = "none"
    monitoring_cidrs: Sequence[str] = ()


@dataclass(frozen=True)
class ApiOptions:
    clients: Sequence[str]
    domain: str = "llm.internal"
    certificate_arn: str | None = None
    max_prompt_bytes: int = 131072
    max_tokens: int = 4096
    rate_limit_per_5min: int = 2000


@dataclass(frozen=True)
class MonitoringOptions:
    alarm_email: str | None = None
    log_retention_days: int = 90
    latency_p99_seconds: float = 30.0
    gpu_memory_alarm_percent: float = 95.0


@dataclass(frozen=True)
class ImageOptions:
    overrides: Mapping[str, str] = field(default_factory=dict)    # catalog key -> <repo>@sha256:...
    upstreams: Sequence[str] | None = None     # cache rules to make; None: those the deployments' images need
    docker_hub_credential_arn: str | None = None
    docker_hub_username: str | None = None
    docker_hub_token: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class EksOptions:
    kubernetes_version: str = "1.33"
    system_instance_type: str = "m7i.large"
    system_nodes: int = 2
    api_access_cidrs: Sequence[str] = ()
    admin_role_arns: Sequence[str] = ()
    monitoring_namespace: str = "monitoring"
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    queue_target: int = 4


@dataclass(frozen=True)
class Ec2PlatformArgs:
    stack: str
    environment: str
    deployments: Sequence[ModelSource]
    network: NetworkOptions
    api: ApiOptions
    monitoring: MonitoringOptions = MonitoringOptions()
    images: ImageOptions = ImageOptions()
    hf_token: pulumi.Input[str] | None = None
    protect: bool = False
    legacy_names: bool = False


@dataclass(frozen=True)
class EksPlatformArgs(Ec2PlatformArgs):
    eks: EksOptions = EksOptions()


@dataclass(frozen=True)
class DockerPlatformArgs:
    stack: str
    environment: str
    deployments: Sequence[ModelSource]
    api: ApiOptions
    port: int = 8443                                # the first model's proxy port on 127.0.0.1, then +1 per model
    image_overrides: Mapping[str, str] = field(default_factory=dict)
    legacy_names: bool = False


class Platform(pulumi.ComponentResource):
    """The common surface. Outputs: endpoints, ca_cert_pem, exports."""

    endpoints: dict[str, str]
    deployments: dict[str, ModelDeployment]
    ca_cert_pem: pulumi.Output[str] | None
    exports: dict[str, Any]

    def __init__(self, type_: str, name: str, legacy_names: bool, props: dict,
                 opts: pulumi.ResourceOptions | None):
        if legacy_names:
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                aliases=[pulumi.Alias(type_=LEGACY_ROOT_TYPE)]))
        super().__init__(type_, name, props, opts)
        self._legacy = legacy_names
        self.deployments, self.ca_cert_pem, self.exports = {}, None, {}

    def _child(self, legacy_name: str | None = None, **kw) -> pulumi.ResourceOptions:
        """Options of a direct child; with legacy_names, an alias to the name it had under LlmPlatform."""
        aliases = [pulumi.Alias(name=legacy_name)] if self._legacy and legacy_name else None
        return pulumi.ResourceOptions(parent=self, aliases=aliases, **kw)

    def _done(self) -> None:
        self.register_outputs({"endpoints": self.endpoints, "ca_cert_pem": self.ca_cert_pem, "exports": self.exports})


class _AwsPlatform(Platform):
    """What EC2 and EKS share: keys, the private network, the model store and the image cache."""

    def _foundation(self, name: str, args: Ec2PlatformArgs, extra_endpoints: Sequence[str] = (),
                    extra_log_groups: Sequence[str] = (), extra_images: Sequence[str] = ()) -> None:
        net, mon = args.network, args.monitoring
        self._keys = PlatformKeys(f"{name}-keys", PlatformKeysArgs(
            stack=args.stack, clients=_with_gate_client(args.api.clients), hf_token=args.hf_token, protect=args.protect,
            extra_log_groups=extra_log_groups), self._child("keys"))
        self._network = PrivateNetwork(f"{name}-network", PrivateNetworkArgs(
            stack=args.stack, kms_key_arn=self._keys.key_arn, cidr=net.cidr,
            availability_zones=net.availability_zones, egress=net.egress, log_retention_days=mon.log_retention_days,
            protect=args.protect, extra_endpoints=extra_endpoints, private_domains=(args.api.domain,)),
            self._child("network"))
        self._store = ModelStore(f"{name}-model-store", ModelStoreArgs(
            stack=args.stack, kms_key_arn=self._keys.key_arn, s3_endpoint_id=self._network.s3_endpoint_id,
            extra_s3_endpoint_ids=[i for i in (self._network.s3_interface_endpoint_id,) if i is not None],
            protect=args.protect), self._child("model-store"))
        # the S3 endpoint admits this stack's bucket (plus ECR's layers and AL2023's repositories) only
        self._network.s3_endpoint_policy(f"{name}-network-s3-policy", [self._store.bucket_arn])
        img = args.images
        upstreams = img.upstreams
        if upstreams is None:
            keys = {d.plan.runtime for d in args.deployments} | {"proxy"} | set(extra_images)
            upstreams = sorted(needed_upstreams(keys, img.overrides))
        self._images = ImageCache(f"{name}-images", ImageCacheArgs(
            stack=args.stack, kms_key_arn=self._keys.key_arn, upstreams=upstreams,
            docker_hub_credential_arn=img.docker_hub_credential_arn, docker_hub_username=img.docker_hub_username,
            docker_hub_token=img.docker_hub_token), self._child("images"))
        self.endpoints = {d.plan.name: f"https://{d.plan.name}.{args.api.domain}/v1" for d in args.deployments}
        self.exports = {"endpoints": self.endpoints, "client_key_secret_arns": self._keys.client_secret_arns}
        if self._keys.hf_token_secret_arn is not None:
            self.exports["hf_token_secret_arn"] = self._keys.hf_token_secret_arn
        if self._images.docker_hub_secret_arn is not None:
            self.exports["docker_hub_credential_secret_arn"] = self._images.docker_hub_secret_arn
        self.exports["model_bucket"] = self._store.bucket_name
        self.exports["model_prefixes"] = {d.plan.name: model_prefix(d.plan.name, d.plan.revision)
                                          for d in args.deployments}


    def _gate(self, name: str, args: Ec2PlatformArgs, ec2: Mapping[str, Any] | None = None,
              eks: Mapping[str, Any] | None = None, after: Sequence[pulumi.Resource] = ()) -> dict:
        """The deploy gate's standing pieces (components/gate.py); its exports, for the deploy workflow."""
        specs = [{"stack": args.stack, "deployment": d.plan.as_dict(), "load": dict(d.load) if d.load else None}
                 for d in args.deployments]
        gate = DeployGate(f"{name}-gate", DeployGateArgs(
            stack=args.stack, platform="eks" if eks else "ec2", specs=specs,
            client_secret_arn=self._keys.client_secret_arns[GATE_CLIENT], kms_key_arn=self._keys.key_arn,
            bucket_name=self._store.bucket_name, bucket_arn=self._store.bucket_arn,
            log_retention_days=args.monitoring.log_retention_days, protect=args.protect, **(ec2 or eks or {})),
            pulumi.ResourceOptions(parent=self, depends_on=list(after)))
        return gate.exports


def _with_gate_client(clients: Sequence[str]) -> tuple[str, ...]:
    """The stack's clients and the deploy gate's own (its key tells gate traffic apart in the audit log)."""
    return tuple(clients) if GATE_CLIENT in clients else (*clients, GATE_CLIENT)


class Ec2Platform(_AwsPlatform):
    def __init__(self, name: str, args: Ec2PlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:index:Ec2Platform", name, args.legacy_names,
                         {"environment": args.environment, "platform": "ec2"}, opts)
        self._foundation(name, args)
        net, api, mon = args.network, args.api, args.monitoring
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        monitoring = Monitoring(f"{name}-monitoring", MonitoringArgs(
            stack=args.stack, kms_key_arn=self._keys.key_arn, kms_key_id=self._keys.key_id,
            retention_days=mon.log_retention_days, alarm_email=mon.alarm_email, protect=args.protect),
            self._child("monitoring"))
        lb = InternalLoadBalancer(f"{name}-api", InternalLoadBalancerArgs(
            stack=args.stack, vpc_id=self._network.vpc_id, vpc_cidr=net.cidr,
            subnet_ids=self._network.private_subnet_ids, s3_prefix_list_id=self._network.s3_prefix_list_id,
            kms_key_arn=self._keys.key_arn, deployments=[d.plan.name for d in args.deployments],
            allowed_client_cidrs=net.allowed_client_cidrs, domain=api.domain, certificate_arn=api.certificate_arn,
            monitoring_cidrs=net.monitoring_cidrs, rate_limit_per_5min=api.rate_limit_per_5min,
            max_prompt_bytes=api.max_prompt_bytes, log_retention_days=mon.log_retention_days, egress=net.egress,
            protect=args.protect), self._child("api"))
        panels = []
        for d in args.deployments:
            plan = d.plan
            fleet = GpuInstanceGroupArgs(
                plan=plan, stack=args.stack, environment=args.environment,
                subnet_ids=self._network.private_subnet_ids, security_group_id=lb.instance_security_group_id,
                target_group_arn=lb.target_group_arns[plan.name], kms_key_arn=self._keys.key_arn,
                model_bucket_name=self._store.bucket_name, model_bucket_arn=self._store.bucket_arn,
                client_secret_arns=self._keys.client_secret_arns, log_group_names=monitoring.log_group_names,
                manifest=d.manifest, manifest_sha256=d.manifest_sha256, provenance=d.provenance,
                max_prompt_bytes=api.max_prompt_bytes, max_tokens=api.max_tokens,
                monitoring_cidrs=net.monitoring_cidrs, domain=api.domain, image_overrides=args.images.overrides,
                capacity=d.capacity)
            alarms = AlarmArgs(stack=args.stack, topic_arn=monitoring.topic_arn, lb_arn_suffix=lb.arn_suffix,
                               tg_arn_suffix=lb.target_group_arn_suffixes[plan.name],
                               latency_p99_seconds=mon.latency_p99_seconds,
                               gpu_memory_percent=mon.gpu_memory_alarm_percent)
            dep = ModelDeployment(f"{name}-{plan.name}", ModelDeploymentArgs(
                plan=plan, ec2=Ec2Serving(fleet=fleet, alarms=alarms), after=[self._images]),
                self._child(plan.name))
            self.deployments[plan.name] = dep
            assert dep.asg_name is not None         # an ec2 deployment has its Auto Scaling group
            panels.append(DashboardPanel(deployment=plan.name, runtime=plan.runtime, asg_name=dep.asg_name,
                                         lb_arn_suffix=lb.arn_suffix,
                                         tg_arn_suffix=lb.target_group_arn_suffixes[plan.name]))
        self.ca_cert_pem = lb.ca_cert_pem
        self.exports["dashboard_url"] = monitoring.dashboard(panels, region)
        self.exports["load_balancer_dns"] = lb.dns_name
        self.exports["gate"] = self._gate(name, args, ec2=dict(
            endpoints=self.endpoints, vpc_id=self._network.vpc_id, vpc_cidr=net.cidr,
            subnet_ids=self._network.private_subnet_ids, alb_security_group_id=lb.alb_security_group_id,
            s3_prefix_list_id=self._network.s3_prefix_list_id, ca_cert_pem=lb.ca_cert_pem))
        if self.ca_cert_pem is not None:
            self.exports["internal_ca_certificate_pem"] = self.ca_cert_pem
        self._done()


class EksPlatform(_AwsPlatform):
    """The cluster in the private network, one KubernetesServing per model; TLS at internal NLBs, names in a
    private zone."""

    def __init__(self, name: str, args: EksPlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:index:EksPlatform", name, args.legacy_names,
                         {"environment": args.environment, "platform": "eks"}, opts)
        self._foundation(name, args, extra_endpoints=EKS_ENDPOINTS,
                         extra_log_groups=(f"/aws/eks/llm-{args.stack}/cluster",), extra_images=("awscli",))
        net, api, mon, eks = args.network, args.api, args.monitoring, args.eks
        tags = {"llm-platform:stack": args.stack}
        invoke = pulumi.InvokeOutputOptions(parent=self)
        region = aws.get_region_output(opts=invoke).region
        account = aws.get_caller_identity_output(opts=invoke).account_id
        registry = pulumi.Output.concat(account, ".dkr.ecr.", region, ".amazonaws.com")
        cluster = GpuCluster(f"{name}-cluster", GpuClusterArgs(
            stack=args.stack, plans=[d.plan for d in args.deployments], vpc_id=self._network.vpc_id,
            vpc_cidr=net.cidr, subnet_ids=self._network.private_subnet_ids, kms_key_arn=self._keys.key_arn,
            kubernetes_version=eks.kubernetes_version, system_instance_type=eks.system_instance_type,
            system_nodes=eks.system_nodes, api_access_cidrs=eks.api_access_cidrs,
            admin_role_arns=eks.admin_role_arns, log_retention_days=mon.log_retention_days, protect=args.protect),
            self._child("cluster"))
        if api.certificate_arn:
            certificate_arn: pulumi.Input[str] = api.certificate_arn
        else:
            certificate_arn, self.ca_cert_pem = internal_certificate(
                f"{name}-api", api.domain, tags, pulumi.ResourceOptions(parent=self),
                legacy_name="api" if self._legacy else None)
        zone = aws.route53.Zone(f"{name}-api-zone", name=api.domain, comment=f"llm-platform {args.stack}",
                                vpcs=[{"vpc_id": self._network.vpc_id}], tags=tags, opts=self._child("api-zone"))
        for d in args.deployments:
            plan = d.plan
            serving = KubernetesServingArgs(
                plan=plan, stack=args.stack, environment=args.environment, provider=cluster.provider,
                cluster_name=cluster.cluster_name, registry=registry, region=region,
                model_bucket_name=self._store.bucket_name, model_bucket_arn=self._store.bucket_arn,
                kms_key_arn=self._keys.key_arn, client_secret_arns=self._keys.client_secret_arns,
                certificate_arn=certificate_arn, vpc_cidr=net.cidr, allowed_client_cidrs=net.allowed_client_cidrs,
                manifest=d.manifest, manifest_sha256=d.manifest_sha256, provenance=d.provenance,
                monitoring_cidrs=net.monitoring_cidrs, monitoring_namespace=eks.monitoring_namespace,
                prometheus_url=eks.prometheus_url, queue_target=eks.queue_target,
                max_prompt_bytes=api.max_prompt_bytes, max_tokens=api.max_tokens, domain=api.domain,
                latency_p99_seconds=mon.latency_p99_seconds, gpu_memory_percent=mon.gpu_memory_alarm_percent,
                image_overrides=args.images.overrides, after=cluster.addons, node_cache=cluster.node_cache,
                s3_endpoint_url=self._network.s3_interface_url())
            dep = ModelDeployment(f"{name}-{plan.name}", ModelDeploymentArgs(plan=plan, eks=serving),
                                  self._child(plan.name))
            self.deployments[plan.name] = dep
            assert dep.hostname is not None         # an eks deployment has its NLB
            aws.route53.Record(f"{name}-api-{plan.name}", zone_id=zone.zone_id, name=f"{plan.name}.{api.domain}",
                               type="CNAME", ttl=60, records=[dep.hostname], opts=self._child(f"api-{plan.name}"))
        self.exports["cluster_name"] = cluster.cluster_name
        self.exports["gate"] = self._gate(name, args, eks=dict(k8s_provider=cluster.provider,
                                                              cluster_name=cluster.cluster_name, vpc_cidr=net.cidr),
                                          after=list(self.deployments.values()))
        if self.ca_cert_pem is not None:
            self.exports["internal_ca_certificate_pem"] = self.ca_cert_pem
        self._done()


class DockerPlatform(Platform):
    """The models on one workstation (pulumi-docker): per model a runtime container and its TLS + key proxy,
    published on 127.0.0.1 only."""

    def __init__(self, name: str, args: DockerPlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:index:DockerPlatform", name, args.legacy_names,
                         {"environment": args.environment, "platform": "docker"}, opts)
        host_opts = pulumi.ResourceOptions(parent=self, aliases=[
            pulumi.Alias(name="local", type_="llm-platform:local:LocalStack")] if self._legacy else None)
        host = DockerHost(f"{name}-host", DockerHostArgs(
            stack=args.stack, clients=args.api.clients, runtimes=sorted({d.plan.runtime for d in args.deployments}),
            image_overrides=args.image_overrides), host_opts)
        self.endpoints = {}
        for i, d in enumerate(args.deployments):
            plan, port = d.plan, args.port + i
            serving = host.serving(plan, port, args.api.max_prompt_bytes, args.api.max_tokens,
                                   manifest=d.manifest, manifest_sha256=d.manifest_sha256)
            self.deployments[plan.name] = ModelDeployment(
                f"{name}-{plan.name}", ModelDeploymentArgs(plan=plan, docker=serving), self._child(plan.name))
            self.endpoints[plan.name] = f"https://{LOOPBACK}:{port}/v1"
        self.ca_cert_pem = host.cert_pem
        self.exports = {"client_keys": host.client_keys, "proxy_certificate_pem": host.cert_pem,
                        "endpoints": self.endpoints}
        self._done()
