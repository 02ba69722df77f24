"""LlmPlatform: the root component. Wires the stack from its StackConfig and DeploymentPlans.

On `platform: ec2`:
  PlatformKeys (KMS CMK, client API keys, HF token) -> PrivateNetwork (VPC, endpoints, flow logs)
  -> ModelStore (S3) and ImageCache (ECR pull-through) -> InternalLoadBalancer (ALB, TLS, WAF,
  DNS) -> per model a ModelDeployment holding its GpuInstanceGroup and its alarms -> Monitoring
  (topic, log groups, dashboard).
Components receive plans and never re-size them.
"""
from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws

from llm_platform.settings import ModelSpec, StackConfig
from llm_platform.sizing.planner import DeploymentPlan
from .gpu_fleet import GpuInstanceGroup
from .images import ImageCache, credential_problem, image_keys, image_overrides
from .keys import PlatformKeys
from .load_balancer import InternalLoadBalancer
from .model_store import ModelStore
from .monitoring import Monitoring
from .network import PrivateNetwork

SUPPORTED_PLATFORMS = ("ec2", "eks", "docker")
# EKS Pod Identity hands out credentials through eks-auth; the load balancer controller calls ELB
# (EKS user guide, "Deploy private clusters")
EKS_ENDPOINTS = ("eks-auth", "elasticloadbalancing")


class ModelDeployment(pulumi.ComponentResource):
    """One model's serving fleet; its inputs are the plan it was built from."""

    def __init__(self, name: str, plan: DeploymentPlan, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:index:ModelDeployment", name, {"plan": plan.as_dict()}, opts)
        self.plan = plan


class LlmPlatform(pulumi.ComponentResource):
    def __init__(self, name: str, config: StackConfig, plans: list[DeploymentPlan], hf_token=None,
                 docker_hub_token=None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:index:LlmPlatform", name,
                         {"environment": config.environment, "platform": config.platform}, opts)
        if config.platform not in SUPPORTED_PLATFORMS:
            raise ValueError(f"llm-platform:platform: {config.platform} cannot be deployed yet (deployable: "
                             f"{', '.join(SUPPORTED_PLATFORMS)}): set platform to ec2")
        # what every platform exports (None where a platform has no such thing)
        self.store = self.lb = self.dashboard_url = None
        self.images = self.keys = None
        self.cluster = None
        self.ca_cert_pem = None
        if config.platform == "docker":
            from .local_docker import LocalStack
            deps = {p.name: ModelDeployment(p.name, p, pulumi.ResourceOptions(parent=self)) for p in plans}
            self.local = LocalStack("local", config=config, plans=plans, parents=deps,
                                    opts=pulumi.ResourceOptions(parent=self))
            self.endpoints = self.local.endpoints
            self.register_outputs({"endpoints": self.endpoints})
            return
        child = pulumi.ResourceOptions(parent=self)
        stack = pulumi.get_stack()
        prod = config.environment == "prod"
        net_cfg, api, mon_cfg = config.network, config.api, config.monitoring
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region

        eks_logs = (f"/aws/eks/llm-{stack}/cluster",) if config.platform == "eks" else ()
        self.keys = PlatformKeys("keys", stack=stack, clients=api.clients, hf_token=hf_token, protect=prod,
                                 extra_log_groups=eks_logs, opts=child)
        self.network = PrivateNetwork("network", stack=stack, cidr=net_cfg.cidr,
                                      availability_zones=net_cfg.availability_zones, egress=net_cfg.egress,
                                      kms_key_arn=self.keys.key.arn, log_retention_days=mon_cfg.log_retention_days,
                                      protect=prod, extra_endpoints=EKS_ENDPOINTS if config.platform == "eks" else (),
                                      opts=child)
        self.store = ModelStore("model-store", stack=stack, kms_key_arn=self.keys.key.arn,
                                s3_endpoint_id=self.network.s3_endpoint.id, protect=prod, opts=child)
        overrides = image_overrides(config)
        self.images = ImageCache("images", stack=stack, image_keys=image_keys(config, plans), overrides=overrides,
                                 docker_hub_credential_arn=config.images.docker_hub_credential_arn,
                                 docker_hub_username=config.images.docker_hub_username,
                                 docker_hub_token=docker_hub_token, create_rules=config.images.create_cache_rules,
                                 kms_key_arn=self.keys.key.arn, opts=child)
        if config.platform == "eks":
            self._eks(config, plans, stack, prod, region, overrides, child)
            return
        self.monitoring = Monitoring("monitoring", stack=stack, kms_key_arn=self.keys.key.arn,
                                     kms_key_id=self.keys.key.key_id, retention_days=mon_cfg.log_retention_days,
                                     alarm_email=mon_cfg.alarm_email, protect=prod, opts=child)
        self.lb = InternalLoadBalancer(
            "api", stack=stack, vpc_id=self.network.vpc_id, vpc_cidr=net_cfg.cidr,
            subnet_ids=self.network.private_subnet_ids, allowed_client_cidrs=net_cfg.allowed_client_cidrs,
            monitoring_cidrs=net_cfg.monitoring_cidrs, domain=api.domain, certificate_arn=api.certificate_arn,
            deployments=[p.name for p in plans], rate_limit_per_5min=api.rate_limit_per_5min,
            max_prompt_bytes=api.max_prompt_bytes, kms_key_arn=self.keys.key.arn,
            log_retention_days=mon_cfg.log_retention_days, s3_prefix_list_id=self.network.s3_endpoint.prefix_list_id,
            egress=net_cfg.egress, protect=prod, opts=child)

        specs: dict[str, ModelSpec] = {m.name: m for m in config.models}
        self.deployments: dict[str, ModelDeployment] = {}
        self.fleets: dict[str, GpuInstanceGroup] = {}
        for plan in plans:
            spec = specs[plan.name]
            dep = ModelDeployment(plan.name, plan, child)
            fleet = GpuInstanceGroup(
                f"{plan.name}-fleet", plan=plan, stack=stack, environment=config.environment,
                subnet_ids=self.network.private_subnet_ids, security_group_id=self.lb.instance_sg.id,
                target_group_arn=self.lb.target_groups[plan.name].arn, kms_key_arn=self.keys.key.arn,
                store=self.store, manifest=spec.checksums.manifest if spec.checksums else None,
                manifest_sha256=spec.checksums.sha256 if spec.checksums else None,
                provenance=spec.provenance.model_dump() if spec.provenance else None,
                client_secret_arns={c: s.arn for c, s in self.keys.client_secrets.items()},
                log_groups=self.monitoring.log_group_names, log_retention_days=mon_cfg.log_retention_days,
                max_prompt_bytes=api.max_prompt_bytes, max_tokens=api.max_tokens,
                monitoring_cidrs=net_cfg.monitoring_cidrs, domain=api.domain, image_overrides=overrides,
                opts=pulumi.ResourceOptions(parent=dep, depends_on=[self.images]))
            self.monitoring.deployment_alarms(
                plan, asg_name=fleet.asg.name, lb_suffix=self.lb.alb.arn_suffix,
                tg_suffix=self.lb.target_groups[plan.name].arn_suffix,
                latency_p99_seconds=mon_cfg.latency_p99_seconds, gpu_memory_percent=mon_cfg.gpu_memory_alarm_percent,
                parent=dep)
            self.deployments[plan.name] = dep
            self.fleets[plan.name] = fleet
        self.ca_cert_pem = self.lb.ca_cert_pem
        self.dashboard_url = self.monitoring.dashboard(
            plans, {n: f.asg.name for n, f in self.fleets.items()}, self.lb.alb.arn_suffix,
            {n: tg.arn_suffix for n, tg in self.lb.target_groups.items()}, region)

        self.endpoints = {p.name: f"https://{p.name}.{api.domain}/v1" for p in plans}
        self.register_outputs({"endpoints": self.endpoints, "dashboard_url": self.dashboard_url})

    def _eks(self, config: StackConfig, plans: list[DeploymentPlan], stack: str, prod: bool, region, overrides: dict,
             child: pulumi.ResourceOptions) -> None:
        """platform eks: the cluster in the private network, one KubernetesServing per model (components/eks.py,
        components/k8s_serving.py); TLS at internal NLBs, names in a private zone."""
        from .eks import GpuCluster
        from .k8s_serving import KubernetesServing
        from .load_balancer import internal_certificate
        net_cfg, api, mon_cfg = config.network, config.api, config.monitoring
        tags = {"llm-platform:stack": stack}
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        registry = pulumi.Output.concat(account, ".dkr.ecr.", region, ".amazonaws.com")
        self.cluster = GpuCluster("cluster", stack=stack, plans=plans, eks=config.eks, vpc_id=self.network.vpc_id,
                                  vpc_cidr=net_cfg.cidr, subnet_ids=self.network.private_subnet_ids,
                                  kms_key_arn=self.keys.key.arn, log_retention_days=mon_cfg.log_retention_days,
                                  protect=prod, opts=child)
        if api.certificate_arn:
            certificate_arn = api.certificate_arn
        else:
            certificate_arn, self.ca_cert_pem = internal_certificate("api", api.domain, tags, child)
        zone = aws.route53.Zone("api-zone", name=api.domain, comment=f"llm-platform {stack}",
                                vpcs=[{"vpc_id": self.network.vpc_id}], tags=tags, opts=child)
        specs: dict[str, ModelSpec] = {m.name: m for m in config.models}
        self.deployments = {}
        for plan in plans:
            spec = specs[plan.name]
            dep = ModelDeployment(plan.name, plan, child)
            serving = KubernetesServing(
                f"{plan.name}-k8s", plan=plan, stack=stack, environment=config.environment, provider=self.cluster.provider,
                cluster_name=self.cluster.cluster.name, registry=registry, region=region, store=self.store,
                manifest=spec.checksums.manifest if spec.checksums else None,
                manifest_sha256=spec.checksums.sha256 if spec.checksums else None, kms_key_arn=self.keys.key.arn,
                client_secrets={c: s.arn for c, s in self.keys.client_secrets.items()},
                certificate_arn=certificate_arn, vpc_cidr=net_cfg.cidr,
                allowed_client_cidrs=net_cfg.allowed_client_cidrs, monitoring_cidrs=net_cfg.monitoring_cidrs,
                eks=config.eks, max_prompt_bytes=api.max_prompt_bytes, max_tokens=api.max_tokens, domain=api.domain,
                latency_p99_seconds=mon_cfg.latency_p99_seconds, gpu_memory_percent=mon_cfg.gpu_memory_alarm_percent,
                image_overrides=overrides, depends_on=list(self.cluster.releases.values()),
                provenance=spec.provenance.model_dump() if spec.provenance else None,
                opts=pulumi.ResourceOptions(parent=dep))
            aws.route53.Record(f"api-{plan.name}", zone_id=zone.zone_id, name=f"{plan.name}.{api.domain}", type="CNAME",
                               ttl=60, records=[serving.hostname], opts=child)
            self.deployments[plan.name] = serving
        self.endpoints = {p.name: f"https://{p.name}.{api.domain}/v1" for p in plans}
        self.register_outputs({"endpoints": self.endpoints, "cluster_name": self.cluster.cluster.name})
