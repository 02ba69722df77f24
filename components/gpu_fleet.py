"""GpuInstanceGroup: one model deployment on EC2, driven entirely by its DeploymentPlan.

Defaults and why:
- AMI: the AWS Deep Learning Base OSS NVIDIA Driver GPU AMI (Amazon Linux 2023), resolved from
  its public SSM parameter at deploy time. Chosen over the ECS GPU-optimized AMI because it ships
  what a bare EC2 GPU host needs and ECS does not use: the NVIDIA fabric manager that p4d/p5 NVSwitch
  systems require, EFA drivers, DCGM, the NVIDIA container toolkit and the CloudWatch agent; and no
  ECS agent that would sit idle. A new AMI makes a new launch-template version, which rolls out
  through instance refresh.
- Launch template: IMDSv2 only with hop limit 1 (containers cannot reach instance credentials),
  no public IP, one gp3 root volume sized by the plan (weights, a staging copy, caches),
  6000 IOPS / 500 MiB/s so a 140 GB model loads in minutes, encrypted with the stack's CMK;
  detailed monitoring; tags with model, revision, precision, runtime, TP/PP and provenance.
- Instance role, inline statements only (no AWS-managed policy): SSM Session Manager instead of
  SSH (no port 22 anywhere), the CloudWatch agent (this stack's log groups, the platform's metric
  namespaces), read of this model's prefix in the model store, read of the API client keys, ECR
  pulls from the repositories the stack created for the cache, and marking an instance of this
  stack's group of this deployment Unhealthy (tag conditions); nothing else.
- Auto Scaling group over every private subnet (AZs), the plan's min/desired/max, ELB health
  checks with a grace period equal to the plan's startup estimate,
  rolling instance refresh that launches new capacity before retiring old (min healthy 100 %),
  and, when autoscaling is configured, target tracking on the runtime's queue depth.
"""
from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from llm_platform.serving.access import instance_statements
from llm_platform.serving.proxy import render_nginx_conf
from llm_platform.serving.runtime import RUNTIME_CONTAINER, cache_repository, image_ref
from llm_platform.serving.telemetry import QUEUE_METRIC, RUNTIME_NAMESPACE, cwagent_config, prometheus_config
from llm_platform.serving.userdata import MODEL_SNAPSHOT_DEVICE, BootConfig, render_user_data
from llm_platform.sizing.fallbacks import variant
from llm_platform.sizing.planner import DeploymentPlan

from . import fleet_capacity as fc
from .fleet_capacity import CapacityOptions
from .model_store import model_prefix, read_statements

AMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
QUEUE_TARGET = 2.0   # scale out when, on average, more than 2 requests wait for a free sequence slot
CAPACITY_REASON_TAG = "llm-platform:capacity-single-type"   # why a group launches one type (policy pack reads it)


@dataclass(frozen=True)
class GpuInstanceGroupArgs:
    plan: DeploymentPlan                               # sizes everything: type, counts, volume, flags, startup
    stack: str
    environment: str
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    security_group_id: pulumi.Input[str]
    target_group_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    model_bucket_name: pulumi.Input[str]
    model_bucket_arn: pulumi.Input[str]
    client_secret_arns: Mapping[str, pulumi.Input[str]]    # client -> Secrets Manager ARN of its API key
    log_group_names: Mapping[str, str]                 # audit, boot, runtime_metrics (Monitoring.log_group_names)
    manifest: str | None = None                     # SHA256SUMS file name in the model's prefix
    manifest_sha256: str | None = None              # its pinned digest
    provenance: Mapping[str, str] | None = None     # tags llm-platform:provenance-*
    max_prompt_bytes: int = 131072
    max_tokens: int = 4096
    monitoring_cidrs: Sequence[str] = ()
    domain: str = "llm.internal"
    image_overrides: Mapping[str, str] = field(default_factory=dict)   # catalog key -> <repo>@sha256:...
    capacity: CapacityOptions | None = None   # warm pool, reservations, model snapshot (the model's config)


class GpuInstanceGroup(pulumi.ComponentResource):
    """Outputs: asg_name, launch_template_id, role_arn."""

    asg_name: pulumi.Output[str]
    launch_template_id: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: GpuInstanceGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:compute:GpuInstanceGroup", name, None, opts)
        plan, stack, manifest, manifest_sha256 = args.plan, args.stack, args.manifest, args.manifest_sha256
        subnet_ids, security_group_id, kms_key_arn = args.subnet_ids, args.security_group_id, args.kms_key_arn
        client_secret_arns, log_groups = dict(args.client_secret_arns), args.log_group_names
        max_prompt_bytes, max_tokens, image_overrides = args.max_prompt_bytes, args.max_tokens, args.image_overrides
        monitoring_cidrs, domain = list(args.monitoring_cidrs), args.domain
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        region = aws.get_region_output(opts=invoke).region
        account = aws.get_caller_identity_output(opts=invoke).account_id
        prefix = model_prefix(plan.name, plan.revision)
        capacity = args.capacity
        snapshot_id = capacity.model_snapshot_id if capacity else None
        tags = deployment_tags(plan, stack, args.environment, manifest_sha256,
                               dict(args.provenance) if args.provenance else None)

        # --- instance role: least privilege for boot and serving
        role = aws.iam.Role(f"{name}-instance", name_prefix=f"llm-{plan.name[:30]}-",
                            description=f"GPU instances serving {plan.name}",
                            assume_role_policy=pulumi.Output.json_dumps({
                                "Version": "2012-10-17", "Statement": [{
                                    "Effect": "Allow", "Action": "sts:AssumeRole",
                                    "Principal": {"Service": "ec2.amazonaws.com"}}]}),
                            tags=tags, opts=child)
        cwagent_parameter = aws.ssm.Parameter(
            f"{name}-cwagent", name=f"/llm-platform/{stack}/{plan.name}/cloudwatch-agent", type="String",
            insecure_value=cwagent_config(plan, audit_log_group=log_groups["audit"],
                                                  boot_log_group=log_groups["boot"],
                                                  metrics_log_group=log_groups["runtime_metrics"]),
            description=f"CloudWatch agent config for {plan.name}", tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-instance", role=role.id, policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17", "Statement": [
                *read_statements(args.model_bucket_arn, plan.name, plan.revision),
                {"Sid": "ReadClientKeys", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                 "Resource": list(client_secret_arns.values())},
                {"Sid": "DecryptThroughServices", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": kms_key_arn,
                 "Condition": {"StringEquals": {"kms:ViaService": [
                     pulumi.Output.concat("secretsmanager.", region, ".amazonaws.com"),
                     pulumi.Output.concat("s3.", region, ".amazonaws.com")]}}},
                # the launch hook: warm-pool preparation done, or serving (serving/userdata.py llm-lifecycle)
                {"Sid": "CompleteOwnLaunchHook", "Effect": "Allow", "Action": ["autoscaling:CompleteLifecycleAction"],
                 "Resource": pulumi.Output.format(
                     "arn:aws:autoscaling:{0}:{1}:autoScalingGroup:*:autoScalingGroupName/llm-{2}-{3}-*",
                     region, account, stack, plan.name),
                 "Condition": {"StringEquals": {"aws:ResourceTag/llm-platform:stack": stack,
                                                "aws:ResourceTag/llm-platform:deployment": plan.name}}},
                *([{"Sid": "CheckModelVolumeSnapshot", "Effect": "Allow", "Action": ["ec2:DescribeVolumes"],
                    "Resource": "*"}] if snapshot_id else []),
            ]}), opts=child)
        # Session Manager, the CloudWatch agent, ECR pulls and the health mark, as inline least-privilege
        # statements (llm_platform/serving/access.py) in place of AmazonSSMManagedInstanceCore (every SSM
        # parameter in the account) and CloudWatchAgentServerPolicy (any log group, any metric namespace)
        repositories = sorted(r for k in {plan.runtime, "proxy"} - set(image_overrides)
                              if (r := cache_repository(k)) is not None)
        aws.iam.RolePolicy(f"{name}-instance-agents", role=role.id, policy=pulumi.Output.all(
            region, account, cwagent_parameter.arn).apply(lambda a: json.dumps({
                "Version": "2012-10-17", "Statement": instance_statements(
                    account=a[1], region=a[0], stack=stack, deployment=plan.name,
                    log_group_arns=[f"arn:aws:logs:{a[0]}:{a[1]}:log-group:{g}"
                                    for g in sorted(set(log_groups.values()))],
                    parameter_arns=[a[2]],
                    repository_arns=[f"arn:aws:ecr:{a[0]}:{a[1]}:repository/{r}" for r in repositories])})),
            opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-instance", role=role.name, tags=tags, opts=child)

        # --- launch template
        ami = aws.ssm.get_parameter_output(name=AMI_PARAMETER, opts=invoke).value
        registry = pulumi.Output.format("{0}.dkr.ecr.{1}.amazonaws.com", account, region)
        _, market = fc.reservation(capacity)

        def template(p: DeploymentPlan, lt_name: str) -> aws.ec2.LaunchTemplate:
            """One launch template per instance type: its own TP, runtime flags and volume (variant plans)."""
            user_data = pulumi.Output.all(
                region=region, registry=registry, bucket=args.model_bucket_name,
                secrets=pulumi.Output.all(**client_secret_arns), parameter=cwagent_parameter.name,
            ).apply(lambda a: encode_user_data(render_user_data(BootConfig(
                plan=p, region=a["region"], registry=a["registry"],
                runtime_image=image_ref(p.runtime, a["registry"], image_overrides.get(p.runtime)),
                proxy_image=image_ref("proxy", a["registry"], image_overrides.get("proxy")),
                model_bucket=a["bucket"], model_prefix=prefix, manifest=manifest, manifest_sha256=manifest_sha256,
                client_secrets=a["secrets"],
                # the proxy reaches the runtime by container name on their bridge network (no host networking)
                nginx_conf=render_nginx_conf(p, max_prompt_bytes, monitoring_cidrs, upstream_host=RUNTIME_CONTAINER),
                cwagent_parameter=a["parameter"], prometheus_config=prometheus_config(p), max_tokens=max_tokens,
                domain=domain, lifecycle_hook=fc.LIFECYCLE_HOOK, model_snapshot_id=snapshot_id))))
            volumes = [{"device_name": "/dev/xvda", "ebs": {
                "volume_size": p.volume_gib, "volume_type": "gp3", "iops": 6000, "throughput": 500,
                "encrypted": "true", "kms_key_id": kms_key_arn, "delete_on_termination": "true"}}]
            if snapshot_id:
                # the verified model directory, restored from its snapshot (size from the snapshot)
                volumes.append({"device_name": MODEL_SNAPSHOT_DEVICE, "ebs": {
                    "snapshot_id": snapshot_id, "volume_type": "gp3", "iops": 16000, "throughput": 1000,
                    "encrypted": "true", "kms_key_id": kms_key_arn, "delete_on_termination": "true"}})
            lt_tags = {**tags, "llm-platform:tensor-parallel": str(p.tensor_parallel_size),
                       "llm-platform:instance-type": p.instance_type}
            return aws.ec2.LaunchTemplate(
                lt_name, name_prefix=f"llm-{stack}-{plan.name}-", description=f"{p.model} on {p.instance_type}",
                image_id=ami, instance_type=p.instance_type, iam_instance_profile={"arn": profile.arn},
                metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                                  "http_put_response_hop_limit": 1, "instance_metadata_tags": "enabled"},
                network_interfaces=[{"device_index": 0, "associate_public_ip_address": "false",
                                     "delete_on_termination": "true", "security_groups": [security_group_id]}],
                block_device_mappings=volumes, monitoring={"enabled": True}, ebs_optimized="true",
                user_data=user_data, update_default_version=True,
                tag_specifications=[{"resource_type": "instance", "tags": lt_tags},
                                    {"resource_type": "volume", "tags": lt_tags}],
                tags=lt_tags, opts=child,
                **(market or {}))

        launch_template = template(plan, f"{name}-lt")
        templates = {plan.instance_type: launch_template}
        for fb in plan.fallbacks:
            templates[fb.instance_type] = template(variant(plan, fb), f"{name}-lt-{fb.instance_type.replace('.', '-')}")
        if capacity is not None and capacity.fast_snapshot_restore and snapshot_id:
            for i, subnet in enumerate(subnet_ids):
                az = aws.ec2.get_subnet_output(id=subnet, opts=invoke).availability_zone
                aws.ebs.FastSnapshotRestore(f"{name}-fsr-{chr(ord('a') + i)}", availability_zone=az,
                                            snapshot_id=snapshot_id,
                                            opts=child)

        # --- auto scaling group: every checked type (fleet_capacity.py), sizes in capacity units
        size = fc.sizes(plan)
        warm = fc.warmups(plan, capacity)
        reservation_spec, _ = fc.reservation(capacity)
        specs = {t: {"launch_template_id": lt.id, "version": lt.latest_version.apply(str)}
                 for t, lt in templates.items()}
        group_tags = dict(tags)
        if not plan.fallbacks:
            group_tags[CAPACITY_REASON_TAG] = plan.fallbacks_reason or "no checked fallback type"
        asg = aws.autoscaling.Group(
            f"{name}-asg", name_prefix=f"llm-{stack}-{plan.name}-", vpc_zone_identifiers=subnet_ids,
            min_size=size["min_size"], max_size=size["max_size"],
            # with target tracking the policy owns desired capacity: setting it here would reset it each `up`
            desired_capacity=size["desired_capacity"],
            health_check_type="ELB",
            # grace: a cold start (replacements and refreshes launch cold); warm-up: the warm-pool start
            health_check_grace_period=warm["grace"], default_instance_warmup=warm["scaling"],
            target_group_arns=[args.target_group_arn], wait_for_capacity_timeout="0",
            launch_template=None if plan.fallbacks else {"id": launch_template.id,
                                                         "version": launch_template.latest_version.apply(str)},
            mixed_instances_policy=fc.mixed_instances_policy(plan, specs) if plan.fallbacks else None,
            warm_pool=fc.warm_pool(plan, capacity),
            initial_lifecycle_hooks=[fc.lifecycle_hook(plan)],
            capacity_reservation_specification=reservation_spec,
            instance_refresh={"strategy": "Rolling", "preferences": {
                "min_healthy_percentage": 100, "max_healthy_percentage": 200, "instance_warmup": str(warm["grace"]),
                "skip_matching": True, "auto_rollback": True}},
            # with fallbacks, scale-in first removes the lowest-priority types (back towards the chosen one)
            termination_policies=(["AllocationStrategy"] if plan.fallbacks else []) + ["OldestLaunchTemplate",
                                                                                       "OldestInstance"],
            enabled_metrics=fc.GROUP_METRICS,
            tags=[{"key": k, "value": v, "propagate_at_launch": True} for k, v in group_tags.items()], opts=child)

        if plan.replicas_max > plan.replicas_min and plan.runtime in QUEUE_METRIC:
            aws.autoscaling.Policy(f"{name}-queue-depth", autoscaling_group_name=asg.name,
                                   policy_type="TargetTrackingScaling", estimated_instance_warmup=warm["scaling"],
                                   target_tracking_configuration=fc.queue_per_unit(
                                       plan, asg.name, QUEUE_METRIC[plan.runtime], RUNTIME_NAMESPACE, QUEUE_TARGET),
                                   opts=child)

        self.asg_name, self.launch_template_id, self.role_arn = asg.name, launch_template.id, role.arn
        self.register_outputs({"asg_name": self.asg_name, "launch_template_id": self.launch_template_id,
                               "role_arn": self.role_arn})


USER_DATA_LIMIT = 16384   # EC2's limit on user data before base64


def encode_user_data(text: str) -> str:
    """base64 for the launch template; gzip first (cloud-init unpacks it) only when the text would
    not fit EC2's 16 KiB limit, so that the usual case stays readable in `pulumi preview`."""
    raw = text.encode()
    if len(raw) > USER_DATA_LIMIT - 1024:
        raw = gzip.compress(raw, mtime=0)
    if len(raw) > USER_DATA_LIMIT:
        raise ValueError(f"user data is {len(raw)} bytes compressed, over EC2's {USER_DATA_LIMIT}: fewer API clients")
    return base64.b64encode(raw).decode()


def deployment_tags(plan: DeploymentPlan, stack: str, environment: str, manifest_sha256: str | None,
                    provenance: dict | None) -> dict:
    tags = {"llm-platform:stack": stack, "llm-platform:environment": environment,
            "llm-platform:deployment": plan.name, "llm-platform:model": plan.model,
            "llm-platform:revision": plan.revision or "unpinned", "llm-platform:precision": plan.precision,
            "llm-platform:runtime": plan.runtime, "llm-platform:tensor-parallel": str(plan.tensor_parallel_size),
            "llm-platform:pipeline-parallel": str(plan.pipeline_parallel_size),
            "llm-platform:checksum": manifest_sha256 or "none"}
    for key, value in (provenance or {}).items():
        tags[f"llm-platform:provenance-{key.replace('_', '-')}"] = value
    return tags
