"""GpuNodeProvisioner: Karpenter for the eks platform, so that every GPU replica KEDA adds gets a node.

- Controller: the karpenter-crd and karpenter Helm charts (catalog/charts.yaml: pinned, with sources) on
  the system nodes, two replicas; AWS access through EKS Pod Identity (no IRSA, no node credentials), with
  the controller policy of Karpenter's getting-started CloudFormation template (v1.14.1) scoped to this
  cluster; an SQS interruption queue (SSE, TLS only) fed by EventBridge rules for AWS Health scheduled
  changes, Spot interruption warnings, rebalance recommendations, instance state changes and Capacity
  Reservation interruption warnings, so nodes drain before EC2 takes them.
- EC2NodeClass `gpu`: EKS-optimized AL2023 AMIs by alias (Karpenter picks the NVIDIA variant for GPU
  types), the cluster's node role, private subnets and the cluster security group by the
  `karpenter.sh/discovery` tag (this component tags them), IMDSv2 with hop limit 1, a CMK-encrypted gp3 root
  volume sized for the largest plan, and instance-store NVMe in RAID0 (nodeadm mounts it at
  /mnt/k8s-disks/0 and puts kubelet and containerd on it): the node-local model cache lives there, its root
  made by the node class's user data (components/node_cache.py). A replica over several nodes gets its own
  node class with a cluster placement group, and its pool one zone.
- One NodePool per deployment: its instance types are the plan's chosen type plus the fallbacks whose GPUs
  run the same pod (sizing/fallbacks.py checks them at the chosen TP), on-demand; labelled so the
  deployment's pods select it and tainted nvidia.com/gpu:NoSchedule; `limits` allow the plan's
  autoscaling maximum on the largest of those types; disruption only of empty nodes (WhenEmpty) after a
  cold start's worth of time (a node kept that long is cheaper than a new cold start, and a returning
  replica finds the cache), at most one node at a time. Serving pods carry karpenter.sh/do-not-disrupt
  (components/k8s_serving.py): Karpenter never evicts a replica to consolidate or roll a node.
Nothing here sizes anything: pools follow the DeploymentPlans.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from llm_platform import catalog
from llm_platform.catalog import charts
from llm_platform.sizing.fallbacks import replicas_max_any_type
from llm_platform.sizing.planner import DeploymentPlan

from .node_cache import NODE_USER_DATA

NODE_CLASS = "gpu"
DISCOVERY_TAG = "karpenter.sh/discovery"
DEPLOYMENT_LABEL = "llm-platform/deployment"
SERVICE_ACCOUNT = "karpenter"
NODE_CACHE_ROOT = "/mnt/k8s-disks/0/llm-models"   # nodeadm's RAID0 of the instance store (EC2NodeClass RAID0)
EXPIRE_AFTER = "720h"                               # nodes are replaced monthly (patched AMI) even if never empty
# EventBridge -> SQS: what Karpenter's interruption controller handles (getting-started cloudformation.yaml)
INTERRUPTION_EVENTS = {
    "health": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "reservation": {"source": ["aws.ec2"], "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"]},
}


def pool_name(plan: DeploymentPlan) -> str:
    return f"gpu-{plan.name}"[:63]


def pool_types(plan: DeploymentPlan) -> list[str]:
    """The chosen type first, then the fallbacks (price order): the types this deployment's pods may land on."""
    return [plan.instance_type, *(f.instance_type for f in plan.fallbacks)]


def gpus_per_node(plan: DeploymentPlan, gpu_counts: Mapping[str, int]) -> int:
    return max(gpu_counts[t] for t in pool_types(plan))


def node_pool(plan: DeploymentPlan, gpu_counts: Mapping[str, int], consolidate_after_s: int,
              node_class_name: str = NODE_CLASS, zones: list | None = None) -> dict:
    """The NodePool (karpenter.sh/v1) of one deployment. `gpu_counts`: instance type -> GPUs per node. A replica
    over several nodes gets its own node class (a cluster placement group) and one zone."""
    max_nodes = replicas_max_any_type(plan) * plan.nodes_per_replica
    zone = [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": zones}] if zones else []
    return {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": pool_name(plan), "labels": {DEPLOYMENT_LABEL: plan.name}},
        "spec": {
            "template": {
                "metadata": {"labels": {DEPLOYMENT_LABEL: plan.name, "llm-platform/node-pool": "gpu",
                                        # the device plugin chart's node affinity schedules only here
                                        "nvidia.com/gpu.present": "true"}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class_name},
                    "requirements": [
                        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": pool_types(plan)},
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                        *zone,
                    ],
                    "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
                    "expireAfter": EXPIRE_AFTER,
                    # a node that must go (expiry, interruption) waits this long for its pods to finish
                    "terminationGracePeriod": f"{max(600, consolidate_after_s)}s",
                },
            },
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": f"{consolidate_after_s}s",
                           "budgets": [{"nodes": "1"}]},
            # the autoscaling maximum (for the slowest listed type) on the largest of its types, and not a GPU more
            "limits": {"nvidia.com/gpu": str(max_nodes * gpus_per_node(plan, gpu_counts))},
        },
    }


def node_class(cluster_name: str, node_role: str, volume_gib: int, kms_key_arn: str, tags: Mapping[str, str],
               name: str = NODE_CLASS, placement_group: str | None = None) -> dict:
    """The EC2NodeClass (karpenter.k8s.aws/v1) GPU pools use; with a placement group for multi-node replicas."""
    placement = {"placementGroupSelector": {"name": placement_group}} if placement_group else {}
    return {
        "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": name},
        "spec": {
            "role": node_role,
            # EKS-optimized AL2023; for GPU instance types Karpenter resolves the NVIDIA variant
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster_name}}],
            "securityGroupSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster_name}}],
            "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                                "httpPutResponseHopLimit": 1, "httpTokens": "required"},
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {
                "volumeSize": f"{volume_gib}Gi", "volumeType": "gp3", "iops": 6000, "throughput": 500,
                "encrypted": True, "kmsKeyID": kms_key_arn, "deleteOnTermination": True}}],
            "instanceStorePolicy": "RAID0",
            "detailedMonitoring": True,
            # the node-local model cache's root, owned by the runtime uid (components/node_cache.py)
            "userData": NODE_USER_DATA,
            "tags": dict(tags),
            **placement,
        },
    }


def controller_policy(cluster: str, region: str, account: str, partition: str, node_role_arn: str,
                      queue_arn: str) -> dict:
    """Karpenter's controller policy, from its getting-started CloudFormation template (v1.14.1:
    website/content/en/docs/getting-started/getting-started-with-karpenter/cloudformation.yaml), for one cluster."""
    arn = f"arn:{partition}"
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster}": "owned"}
    req_owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster}": "owned",
                 "aws:RequestTag/eks:eks-cluster-name": cluster}
    created = [f"{arn}:ec2:{region}:*:{r}/*" for r in ("fleet", "instance", "volume", "network-interface",
                                                        "launch-template", "spot-instances-request")]
    profile = f"{arn}:iam::{account}:instance-profile/*"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "AllowScopedEC2InstanceAccessActions", "Effect": "Allow",
         "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
         "Resource": [f"{arn}:ec2:{region}::image/*", f"{arn}:ec2:{region}::snapshot/*",
                      f"{arn}:ec2:{region}:*:security-group/*", f"{arn}:ec2:{region}:*:subnet/*",
                      f"{arn}:ec2:{region}:*:capacity-reservation/*", f"{arn}:ec2:{region}:*:placement-group/*"]},
        {"Sid": "AllowScopedEC2LaunchTemplateAccessActions", "Effect": "Allow",
         "Action": ["ec2:RunInstances", "ec2:CreateFleet"], "Resource": f"{arn}:ec2:{region}:*:launch-template/*",
         "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "AllowScopedEC2InstanceActionsWithTags", "Effect": "Allow",
         "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"], "Resource": created,
         "Condition": {"StringEquals": req_owned, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "AllowScopedResourceCreationTagging", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": created,
         "Condition": {"StringEquals": {**req_owned, "ec2:CreateAction": ["RunInstances", "CreateFleet",
                                                                          "CreateLaunchTemplate"]},
                       "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "AllowScopedResourceTagging", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": f"{arn}:ec2:{region}:*:instance/*",
         "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                       "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster},
                       "ForAllValues:StringEquals": {"aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim",
                                                                     "Name"]}}},
        {"Sid": "AllowScopedDeletion", "Effect": "Allow",
         "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
         "Resource": [f"{arn}:ec2:{region}:*:instance/*", f"{arn}:ec2:{region}:*:launch-template/*"],
         "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "AllowPassingInstanceRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": node_role_arn,
         "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}}},
        {"Sid": "AllowScopedInstanceProfileCreationActions", "Effect": "Allow", "Action": ["iam:CreateInstanceProfile"],
         "Resource": profile,
         "Condition": {"StringEquals": {**req_owned, "aws:RequestTag/topology.kubernetes.io/region": region},
                       "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        {"Sid": "AllowScopedInstanceProfileTagActions", "Effect": "Allow", "Action": ["iam:TagInstanceProfile"],
         "Resource": profile,
         "Condition": {"StringEquals": {**owned, "aws:ResourceTag/topology.kubernetes.io/region": region, **req_owned,
                                        "aws:RequestTag/topology.kubernetes.io/region": region},
                       "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                                      "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        {"Sid": "AllowScopedInstanceProfileActions", "Effect": "Allow",
         "Action": ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"],
         "Resource": profile,
         "Condition": {"StringEquals": {**owned, "aws:ResourceTag/topology.kubernetes.io/region": region},
                       "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        {"Sid": "AllowAPIServerEndpointDiscovery", "Effect": "Allow", "Action": "eks:DescribeCluster",
         "Resource": f"{arn}:eks:{region}:{account}:cluster/{cluster}"},
        {"Sid": "AllowInterruptionQueueActions", "Effect": "Allow",
         "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"], "Resource": queue_arn},
        {"Sid": "AllowZonalShiftStatusReadOnly", "Effect": "Allow", "Action": ["arc-zonal-shift:GetManagedResource"],
         "Resource": "*", "Condition": {"StringEquals": {
             "arc-zonal-shift:ResourceIdentifier": f"{arn}:eks:{region}:{account}:cluster/{cluster}"}}},
        {"Sid": "AllowRegionalReadActions", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances",
            "ec2:DescribeInstanceStatus", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
            "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups", "ec2:DescribeSecurityGroups",
            "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"],
         "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
        {"Sid": "AllowSSMReadActions", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": f"{arn}:ssm:{region}::parameter/aws/service/*"},
        {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Action": "pricing:GetProducts", "Resource": "*"},
        {"Sid": "AllowUnscopedInstanceProfileListAction", "Effect": "Allow", "Action": "iam:ListInstanceProfiles",
         "Resource": "*"},
        {"Sid": "AllowInstanceProfileReadActions", "Effect": "Allow", "Action": "iam:GetInstanceProfile",
         "Resource": profile},
    ]}


def controller_values(cluster_name: str, queue_name, endpoint, system_selector: Mapping[str, str]) -> dict:
    """Values of the karpenter chart (keys checked against its values.yaml in tests/test_charts.py)."""
    return {"settings": {"clusterName": cluster_name, "clusterEndpoint": endpoint, "interruptionQueue": queue_name},
            "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
            "replicas": 2, "nodeSelector": dict(system_selector),
            "controller": {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                         "limits": {"memory": "1Gi"}}}}


@dataclass(frozen=True)
class GpuNodeProvisionerArgs:
    stack: str
    plans: Sequence[DeploymentPlan]                    # one NodePool per deployment, types from its plan
    cluster_name: pulumi.Input[str]
    cluster_endpoint: pulumi.Input[str]
    cluster_security_group_id: pulumi.Input[str]       # EKS's cluster SG: what nodes need to talk to the API
    subnet_ids: Sequence[pulumi.Input[str]]            # private subnets nodes launch in (tagged for discovery)
    node_role_arn: pulumi.Input[str]
    node_role_name: pulumi.Input[str]                  # already has an access entry (the system node group's)
    kms_key_arn: pulumi.Input[str]
    gpu_counts: Mapping[str, int] | None = None     # instance type -> GPUs per node (default: the catalog)
    system_selector: Mapping[str, str] = field(default_factory=dict)
    provider: k8s.Provider | None = None
    depends_on: Sequence[pulumi.Resource] = ()         # the system nodes the controller runs on


class GpuNodeProvisioner(pulumi.ComponentResource):
    """Outputs: queue_url, role_arn. Handle: `ready` (what GPU workloads must wait for)."""

    queue_url: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: GpuNodeProvisionerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:eks:GpuNodeProvisioner", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        tags = {"llm-platform:stack": args.stack}
        region = aws.get_region_output(opts=invoke).region
        identity = aws.get_caller_identity_output(opts=invoke)
        partition = aws.get_partition_output(opts=invoke).partition

        # --- discovery tags on what the EC2NodeClass selects
        for i, subnet in enumerate(args.subnet_ids):
            aws.ec2.Tag(f"{name}-subnet-{chr(ord('a') + i)}", resource_id=subnet, key=DISCOVERY_TAG,
                        value=args.cluster_name,
                        opts=child)
        aws.ec2.Tag(f"{name}-cluster-sg", resource_id=args.cluster_security_group_id, key=DISCOVERY_TAG,
                    value=args.cluster_name, opts=child)

        # --- interruption queue
        queue = aws.sqs.Queue(f"{name}-interruption", name=pulumi.Output.concat(args.cluster_name, "-karpenter"),
                              message_retention_seconds=300, sqs_managed_sse_enabled=True, tags=tags, opts=child)
        aws.sqs.QueuePolicy(f"{name}-interruption", queue_url=queue.id, policy=queue.arn.apply(lambda a: json.dumps({
            "Version": "2012-10-17", "Id": "EC2InterruptionPolicy", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                 "Action": "sqs:SendMessage", "Resource": a},
                {"Sid": "DenyHTTP", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": a,
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})), opts=child)
        for key, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(f"{name}-{key}", description=f"Karpenter interruption: {key}",
                                            event_pattern=json.dumps(pattern), tags=tags, opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{key}", rule=rule.name, arn=queue.arn,
                                       target_id="KarpenterInterruptionQueueTarget", opts=child)

        # --- controller identity (Pod Identity)
        role = aws.iam.Role(f"{name}-controller", assume_role_policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                                                    "Principal": {"Service": "pods.eks.amazonaws.com"},
                                                    "Action": ["sts:AssumeRole", "sts:TagSession"]}]}),
            description="Karpenter controller (EKS Pod Identity)", tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-controller", role=role.id, policy=pulumi.Output.all(
            args.cluster_name, region, identity.account_id, partition, args.node_role_arn, queue.arn).apply(
                lambda a: json.dumps(controller_policy(*a))), opts=child)
        association = aws.eks.PodIdentityAssociation(
            f"{name}-controller", cluster_name=args.cluster_name, namespace=charts.load()["karpenter"]["namespace"],
            service_account=SERVICE_ACCOUNT, role_arn=role.arn, tags=tags, opts=child)

        # --- charts: CRDs first (so upgrades update them), then the controller
        kopts = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(args.depends_on))
        crds = self._chart("karpenter-crd", {}, kopts)
        controller = self._chart("karpenter", controller_values(args.cluster_name, queue.name, args.cluster_endpoint,
                                                                args.system_selector),
                                 pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(
                                     depends_on=[crds, association])), skip_crds=True)

        # --- node class and one pool per deployment
        after = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[controller])
        volume = max(p.volume_gib for p in args.plans) + 50
        spec = pulumi.Output.all(args.cluster_name, args.node_role_name, args.kms_key_arn).apply(
            lambda a: node_class(a[0], a[1], volume, a[2], tags)["spec"])
        nc = k8s.apiextensions.CustomResource(f"{name}-{NODE_CLASS}", api_version="karpenter.k8s.aws/v1",
                                              kind="EC2NodeClass", metadata={"name": NODE_CLASS}, spec=spec, opts=after)
        self.ready: list[pulumi.Resource] = [controller, nc]
        counts = (dict(args.gpu_counts) if args.gpu_counts
                  else {k: v.gpu_count for k, v in catalog.load().instances.items()})
        first_zone = aws.ec2.get_subnet_output(id=args.subnet_ids[0], opts=invoke).availability_zone
        for plan in args.plans:
            consolidate = plan.startup.cold_seconds if plan.startup else plan.startup_seconds
            cls, zones, deps = NODE_CLASS, None, [nc]
            if plan.nodes_per_replica > 1:
                # pipeline stages exchange activations every step: a replica's nodes in one cluster placement group
                pg = aws.ec2.PlacementGroup(f"{name}-{plan.name}", strategy="cluster", tags=tags, opts=child)
                cls = f"{NODE_CLASS}-{plan.name}"[:63]
                own = pulumi.Output.all(args.cluster_name, args.node_role_name, args.kms_key_arn, pg.name).apply(
                    lambda a, c=cls: node_class(a[0], a[1], volume, a[2], tags, c, a[3])["spec"])
                deps = [k8s.apiextensions.CustomResource(f"{name}-{cls}", api_version="karpenter.k8s.aws/v1",
                                                         kind="EC2NodeClass", metadata={"name": cls}, spec=own,
                                                         opts=after)]
                self.ready += deps
                zones = [first_zone]
            doc = node_pool(plan, counts, consolidate, cls, zones)
            self.ready.append(k8s.apiextensions.CustomResource(
                f"{name}-{pool_name(plan)}", api_version=doc["apiVersion"], kind=doc["kind"], metadata=doc["metadata"],
                spec=doc["spec"], opts=pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions(depends_on=deps))))

        self.queue_url = queue.id
        self.role_arn = role.arn
        self.register_outputs({"queue_url": queue.id, "role_arn": role.arn})

    def _chart(self, key: str, values: dict, opts: pulumi.ResourceOptions, skip_crds: bool = False):
        c = charts.load()[key]
        repo = {"repository_opts": {"repo": c["repo"]}} if c["repo"] else {}
        return k8s.helm.v3.Release(f"{self._name}-{key}", name=key, chart=c["chart"], version=c["version"],
                                   namespace=c["namespace"], create_namespace=False, atomic=True,
                                   cleanup_on_fail=True, skip_crds=skip_crds, values=values,
                                   opts=opts, **repo)
