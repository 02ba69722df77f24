"""The one place that maps our stack config (llm_platform.settings.StackConfig) and its DeploymentPlans to
component Args. Components never read the stack config."""
from __future__ import annotations

import pulumi

from llm_platform.components import (
    ApiOptions,
    DockerPlatformArgs,
    Ec2PlatformArgs,
    EksOptions,
    EksPlatformArgs,
    ImageOptions,
    ModelSource,
    MonitoringOptions,
    NetworkOptions,
)
from llm_platform.components.fleet_capacity import CapacityOptions, ReservationOptions
from llm_platform.components.images import needed_upstreams
from llm_platform.settings import StackConfig
from llm_platform.settings.schema import Capacity
from llm_platform.sizing.planner import DeploymentPlan

from .images import image_keys, image_overrides


def model_sources(config: StackConfig, plans: list[DeploymentPlan]) -> list[ModelSource]:
    specs = {m.name: m for m in config.models}
    out = []
    for plan in plans:
        spec = specs[plan.name]
        out.append(ModelSource(plan=plan, manifest=spec.checksums.manifest if spec.checksums else None,
                               manifest_sha256=spec.checksums.sha256 if spec.checksums else None,
                               provenance=spec.provenance.model_dump() if spec.provenance else None,
                               capacity=capacity_options(spec.capacity),
                               load=spec.load.model_dump() if spec.load else None))
    return out


def capacity_options(capacity: Capacity | None) -> CapacityOptions | None:
    """A model entry's `capacity` block as the components take it."""
    if capacity is None:
        return None
    res = capacity.reservations
    return CapacityOptions(
        fallbacks=capacity.fallbacks, max_fallbacks=capacity.max_fallbacks, warm_pool=bool(capacity.warm_pool),
        reservations=None if res is None else ReservationOptions(ids=tuple(res.ids), preference=res.preference,
                                                                 capacity_block=res.capacity_block),
        model_snapshot_id=capacity.model_snapshot_id, fast_snapshot_restore=capacity.fast_snapshot_restore)


def api_options(config: StackConfig) -> ApiOptions:
    api = config.api
    return ApiOptions(clients=tuple(api.clients), domain=api.domain, certificate_arn=api.certificate_arn,
                      max_prompt_bytes=api.max_prompt_bytes, max_tokens=api.max_tokens,
                      rate_limit_per_5min=api.rate_limit_per_5min)


def aws_platform_args(config: StackConfig, plans: list[DeploymentPlan], stack: str,
                      hf_token: pulumi.Input[str] | None = None,
                      docker_hub_token: pulumi.Input[str] | None = None) -> Ec2PlatformArgs:
    """Ec2PlatformArgs (or EksPlatformArgs for platform eks) of a stack."""
    net, mon, images = config.network, config.monitoring, config.images
    overrides = image_overrides(config)
    upstreams = needed_upstreams(image_keys(config, plans), overrides) if images and images.create_cache_rules else ()
    common = dict(
        stack=stack, environment=config.environment, deployments=tuple(model_sources(config, plans)),
        network=NetworkOptions(allowed_client_cidrs=tuple(net.allowed_client_cidrs), cidr=net.cidr,
                               availability_zones=net.availability_zones if isinstance(net.availability_zones, int)
                               else tuple(net.availability_zones),
                               egress=net.egress, monitoring_cidrs=tuple(net.monitoring_cidrs)),
        api=api_options(config),
        monitoring=MonitoringOptions(alarm_email=mon.alarm_email, log_retention_days=mon.log_retention_days,
                                     latency_p99_seconds=mon.latency_p99_seconds,
                                     gpu_memory_alarm_percent=mon.gpu_memory_alarm_percent),
        images=ImageOptions(overrides=overrides, upstreams=tuple(sorted(upstreams)),
                            docker_hub_credential_arn=images.docker_hub_credential_arn if images else None,
                            docker_hub_username=images.docker_hub_username if images else None,
                            docker_hub_token=docker_hub_token),
        hf_token=hf_token, protect=config.environment == "prod", legacy_names=True)
    if config.platform == "eks":
        eks = config.eks
        assert eks is not None      # the schema fills eks for platform eks
        return EksPlatformArgs(**common, eks=EksOptions(
            kubernetes_version=eks.kubernetes_version, system_instance_type=eks.system_instance_type,
            system_nodes=eks.system_nodes, api_access_cidrs=tuple(eks.api_access_cidrs),
            admin_role_arns=tuple(eks.admin_role_arns), monitoring_namespace=eks.monitoring_namespace,
            prometheus_url=eks.prometheus_url, queue_target=eks.queue_target))
    return Ec2PlatformArgs(**common)


def docker_platform_args(config: StackConfig, plans: list[DeploymentPlan], stack: str,
                         **_secrets: object) -> DockerPlatformArgs:
    # a local stack pulls straight from the registries: any image override applies (no cache rules)
    overrides = {k: v for k, v in (config.images.model_dump() if config.images else {}).items()
                 if v and isinstance(v, str) and k not in ("docker_hub_credential_arn", "docker_hub_username")}
    assert config.local is not None     # the schema requires `local` for platform docker
    return DockerPlatformArgs(stack=stack, environment=config.environment,
                              deployments=tuple(model_sources(config, plans)), api=api_options(config),
                              port=config.local.port, image_overrides=overrides, legacy_names=True)
