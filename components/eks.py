"""GpuCluster: the EKS cluster of `platform: eks`, in the stack's private network.

- Control plane: private endpoint only (no public endpoint at all: `pulumi up` and kubectl run from
  the VPC or the VPN), Kubernetes secrets envelope-encrypted with the stack's CMK, all five
  control-plane log types to a CMK-encrypted log group with the stack's retention, access entries
  (API authentication mode) instead of the aws-auth ConfigMap, EKS Pod Identity for workloads.
- Nodes: a small CPU system group (controllers, CoreDNS), and one GPU managed node group per instance
  type the plans need, sized from the plans (instances at min, replicas_max x nodes at max):
  AL2023 NVIDIA AMI type, taint nvidia.com/gpu=true:NoSchedule, labels naming the GPU and the type;
  a launch template with IMDSv2 (hop limit 1: pods cannot reach node credentials), CMK-encrypted
  gp3 root volumes big enough for the model cache, and a cluster placement group in one AZ when a
  replica spans nodes (pipeline parallel over the instance network).
- In-cluster: the NVIDIA device plugin (GPU nodes only), LeaderWorkerSet (only when a plan spans
  nodes), KEDA (queue-depth autoscaling) and the AWS Load Balancer Controller (internal NLBs), as
  Helm releases pinned by chart version (sources below), each controller on the system nodes.
Nothing here sizes anything: node groups follow the DeploymentPlans.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from llm_platform.catalog import charts
from llm_platform.serving.access import PRINCIPAL_ONLY_ACTIONS
from llm_platform.sizing.planner import DeploymentPlan

from .karpenter import GpuNodeProvisioner, GpuNodeProvisionerArgs
from .node_cache import NodeModelCache, NodeModelCacheArgs

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
NODE_POOL_LABEL = "llm-platform/node-pool"
GPU_LABEL = "llm-platform/gpu"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"     # set by the kubelet on every node
CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

# Helm charts, pinned by version with the source each pin was checked against (catalog/charts.yaml; the chart
# pins its images' tags; mirror them for egress none)
CHARTS = charts.load()


def _assume(service: str, actions=("sts:AssumeRole",)) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions)}]})


POD_IDENTITY_TRUST = _assume("pods.eks.amazonaws.com", ("sts:AssumeRole", "sts:TagSession"))


def node_groups_needed(plans: list[DeploymentPlan]) -> dict[str, dict]:
    """Per instance type: nodes at min and max, the largest per-node volume, whether a replica spans nodes."""
    groups: dict[str, dict] = {}
    for p in plans:
        g = groups.setdefault(p.instance_type, {"min": 0, "max": 0, "volume_gib": 0, "multi_node": False,
                                                "gpu": p.gpu_name, "deployments": []})
        g["min"] += p.instances
        g["max"] += p.instances_max
        g["volume_gib"] = max(g["volume_gib"], p.volume_gib)
        g["multi_node"] = g["multi_node"] or p.nodes_per_replica > 1
        g["deployments"].append(p.name)
    return groups


def group_name(instance_type: str) -> str:
    return "gpu-" + instance_type.replace(".", "-")


@dataclass(frozen=True)
class GpuClusterArgs:
    stack: str
    plans: Sequence[DeploymentPlan]                    # one GPU node group per instance type they use
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    kms_key_arn: pulumi.Input[str]                     # secrets envelope encryption, control-plane logs, volumes
    kubernetes_version: str = "1.33"
    system_instance_type: str = "m7i.large"
    system_nodes: int = 2
    api_access_cidrs: Sequence[str] = ()               # beyond the VPC: VPN, CI runners
    admin_role_arns: Sequence[str] = ()                # cluster-admin access entries
    log_retention_days: int = 90
    protect: bool = False


def _listed(subnet_ids) -> list:
    """The subnets one by one (Karpenter's discovery tag goes on each): GpuClusterArgs.subnet_ids must be a list."""
    if not isinstance(subnet_ids, (list, tuple)):
        raise ValueError("GpuClusterArgs.subnet_ids: give a list of subnet ids (one Output per subnet), not one Output "
                         "of a list: each subnet gets Karpenter's discovery tag")
    return list(subnet_ids)


def role_of(arn: str) -> str:
    """The last path part of an IAM ARN, as a name part (arn:aws:iam::1:role/ops/Admin -> admin)."""
    return arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower().replace("_", "-").replace(".", "-").replace("@", "-")


class GpuCluster(pulumi.ComponentResource):
    """Outputs: cluster_name, endpoint, security_group_id. Handles for composition: `provider` (the cluster's
    Kubernetes provider) and `addons` (the Helm releases workloads must wait for)."""

    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    provider: k8s.Provider
    addons: list[pulumi.Resource]

    def __init__(self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:eks:GpuCluster", name, None, opts)
        stack, plans, vpc_id, vpc_cidr = args.stack, list(args.plans), args.vpc_id, args.vpc_cidr
        subnet_ids, kms_key_arn, protect = args.subnet_ids, args.kms_key_arn, args.protect
        child = pulumi.ResourceOptions(parent=self)
        tags = {"llm-platform:stack": stack}
        cluster_name = f"llm-{stack}"

        cluster_role = aws.iam.Role(f"{name}-cluster",
                                    assume_role_policy=_assume("eks.amazonaws.com",
                                                               ("sts:AssumeRole", "sts:TagSession")),
                                    tags=tags, opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-cluster", role=cluster_role.name,
                                     policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy", opts=child)
        # created first so that it carries the CMK and the retention (EKS would make one without either)
        log_group = aws.cloudwatch.LogGroup(f"{name}-control-plane", name=f"/aws/eks/{cluster_name}/cluster",
                                            retention_in_days=args.log_retention_days, kms_key_id=kms_key_arn,
                                            tags=tags, opts=child)
        security_group = aws.ec2.SecurityGroup(
            f"{name}-api", vpc_id=vpc_id, description="EKS API: HTTPS from inside the VPC only",
            ingress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": [vpc_cidr],
                      "description": "kubectl / pulumi from the VPC (runners in the VPC, SSM port forward)"}]
                    + ([{"protocol": "tcp", "from_port": 443, "to_port": 443,
                         "cidr_blocks": list(args.api_access_cidrs),
                         "description": "kubectl / pulumi from eks.api_access_cidrs (VPN, CI)"}]
                       if args.api_access_cidrs else []),
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": [vpc_cidr],
                     "description": "to nodes and VPC endpoints"}],
            tags={**tags, "Name": f"{cluster_name}-api"}, opts=child)
        self._cluster = aws.eks.Cluster(
            f"{name}-cluster", name=cluster_name, role_arn=cluster_role.arn, version=args.kubernetes_version,
            vpc_config={"subnet_ids": subnet_ids, "endpoint_private_access": True, "endpoint_public_access": False,
                        "security_group_ids": [security_group.id]},
            encryption_config={"provider": {"key_arn": kms_key_arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=CONTROL_PLANE_LOGS,
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
            upgrade_policy={"support_type": "STANDARD"}, tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=protect, depends_on=[log_group]))

        node_role = aws.iam.Role(f"{name}-node", assume_role_policy=_assume("ec2.amazonaws.com"), tags=tags, opts=child)
        # (AmazonSSMManagedInstanceCore, once the fourth, gave every SSM parameter in the account: its Session
        # Manager part is inline below)
        for i, policy in enumerate(("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
                                    "AmazonEC2ContainerRegistryPullOnly")):
            # once named by position (<name>-node-0): the alias keeps them in place
            aws.iam.RolePolicyAttachment(f"{name}-node-{policy}", role=node_role.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                                         opts=pulumi.ResourceOptions(parent=self,
                                                                     aliases=[pulumi.Alias(name=f"{name}-node-{i}")]))
        # the pull-through cache fills repositories the stack created (ImageCache): no ecr:CreateRepository;
        # Session Manager's registration and channels instead of AmazonSSMManagedInstanceCore
        aws.iam.RolePolicy(f"{name}-node-ptc", role=node_role.id, policy=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Sid": "EcrPullThroughCacheImport", "Effect": "Allow", "Action": ["ecr:BatchImportUpstreamImage"],
                 "Resource": "*"},
                {"Sid": "SessionManagerRegistration", "Effect": "Allow",
                 "Action": ["ssm:UpdateInstanceInformation", "ssm:ListInstanceAssociations"],
                 "Resource": "arn:aws:ec2:*:*:instance/*"},
                {"Sid": "SessionManagerChannels", "Effect": "Allow",
                 "Action": PRINCIPAL_ONLY_ACTIONS["ssmmessages"] + PRINCIPAL_ONLY_ACTIONS["ec2messages"],
                 "Resource": "*"}]}),
            opts=child)

        system_lt = self._launch_template(f"{name}-system", 50, kms_key_arn, tags, None, child)
        self._system_nodes = aws.eks.NodeGroup(
            f"{name}-system", cluster_name=self._cluster.name, node_group_name="system", node_role_arn=node_role.arn,
            subnet_ids=subnet_ids, ami_type="AL2023_x86_64_STANDARD", instance_types=[args.system_instance_type],
            scaling_config={"desired_size": args.system_nodes, "min_size": args.system_nodes,
                            "max_size": args.system_nodes + 1},
            launch_template={"id": system_lt.id, "version": system_lt.latest_version.apply(str)},
            labels={NODE_POOL_LABEL: "system"}, update_config={"max_unavailable": 1}, tags=tags, opts=child)

        for addon in ("vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent"):
            # the VPC CNI enforces NetworkPolicy only when asked to (off by default)
            config = json.dumps({"enableNetworkPolicy": "true"}) if addon == "vpc-cni" else None
            aws.eks.Addon(f"{name}-{addon}", cluster_name=self._cluster.name, addon_name=addon,
                          configuration_values=config, resolve_conflicts_on_create="OVERWRITE",
                          resolve_conflicts_on_update="OVERWRITE", tags=tags,
                          opts=pulumi.ResourceOptions(parent=self, depends_on=[self._system_nodes]))
        for i, arn in enumerate(args.admin_role_arns):
            was = [pulumi.Alias(name=f"{name}-admin-{i}")]     # once named by position
            entry = aws.eks.AccessEntry(f"{name}-admin-{role_of(arn)}", cluster_name=self._cluster.name,
                                        principal_arn=arn, type="STANDARD", tags=tags,
                                        opts=pulumi.ResourceOptions(parent=self, aliases=was))
            aws.eks.AccessPolicyAssociation(f"{name}-admin-{role_of(arn)}", cluster_name=self._cluster.name,
                                            principal_arn=arn,
                                            policy_arn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                                            access_scope={"type": "cluster"},
                                            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry], aliases=was))

        # GPU nodes come from Karpenter (components/karpenter.py): one NodePool per deployment over its chosen and
        # fallback types, so every replica KEDA adds gets a node; no static GPU node group is left
        self._gpu_node_groups: dict[str, aws.eks.NodeGroup] = {}

        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self._kubeconfig(), enable_server_side_apply=True,
                                     opts=pulumi.ResourceOptions(parent=self, depends_on=[self._system_nodes]))
        kopts = pulumi.ResourceOptions(parent=self, provider=self.provider)
        system = {"nodeSelector": {NODE_POOL_LABEL: "system"}}
        self._releases: dict[str, k8s.helm.v3.Release] = {}
        self._releases["nvidia-device-plugin"] = self._chart("nvidia-device-plugin", {
            # only on GPU nodes, tolerating their taint
            "nodeSelector": {NODE_POOL_LABEL: "gpu"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "failOnInitError": True}, kopts)
        if any(p.nodes_per_replica > 1 for p in plans):
            self._releases["lws"] = self._chart("lws", {"nodeSelector": system["nodeSelector"]}, kopts)
        self._releases["keda"] = self._chart("keda", {"nodeSelector": system["nodeSelector"]}, kopts)
        lbc_role = aws.iam.Role(f"{name}-lbc", assume_role_policy=POD_IDENTITY_TRUST, tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-lbc", role=lbc_role.id, policy=json.dumps(lbc_policy()), opts=child)
        lbc_identity = aws.eks.PodIdentityAssociation(
            f"{name}-lbc", cluster_name=self._cluster.name, namespace="kube-system",
            service_account="aws-load-balancer-controller", role_arn=lbc_role.arn, tags=tags, opts=child)
        self._releases["aws-load-balancer-controller"] = self._chart("aws-load-balancer-controller", {
            "clusterName": cluster_name, "vpcId": vpc_id, "region": aws.get_region_output(
                opts=pulumi.InvokeOutputOptions(parent=self)).region,
            "serviceAccount": {"create": True, "name": "aws-load-balancer-controller"},
            "replicaCount": 2, "nodeSelector": system["nodeSelector"],
            # a private cluster reaches no Shield/WAF endpoint (EKS private clusters guide)
            "enableShield": False, "enableWaf": False, "enableWafv2": False},
            pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(depends_on=[lbc_identity])))
        provisioner = GpuNodeProvisioner(f"{name}-karpenter", GpuNodeProvisionerArgs(
            stack=stack, plans=plans, cluster_name=self._cluster.name, cluster_endpoint=self._cluster.endpoint,
            cluster_security_group_id=self._cluster.vpc_config.cluster_security_group_id,
            subnet_ids=_listed(subnet_ids),
            node_role_arn=node_role.arn, node_role_name=node_role.name, kms_key_arn=kms_key_arn,
            system_selector=system["nodeSelector"], provider=self.provider,
            depends_on=[self._system_nodes, *self._releases.values()]), pulumi.ResourceOptions(parent=self))
        self.node_cache = NodeModelCache(f"{name}-node-cache", NodeModelCacheArgs(provider=self.provider),
                                         pulumi.ResourceOptions(parent=self, depends_on=provisioner.ready))
        self.addons = [*self._releases.values(), *provisioner.ready]
        self.cluster_name, self.endpoint = self._cluster.name, self._cluster.endpoint
        self.security_group_id = security_group.id
        self.register_outputs({"cluster_name": self.cluster_name, "endpoint": self.endpoint,
                               "security_group_id": self.security_group_id})

    def _launch_template(self, name: str, volume_gib: int, kms_key_arn, tags: dict, placement, child):
        return aws.ec2.LaunchTemplate(
            name, description="llm-platform EKS nodes: IMDSv2, encrypted root volume",
            metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 1, "http_endpoint": "enabled"},
            block_device_mappings=[{"device_name": "/dev/xvda", "ebs": {
                "volume_size": volume_gib, "volume_type": "gp3", "encrypted": "true", "kms_key_id": kms_key_arn,
                "delete_on_termination": "true", "throughput": 500, "iops": 6000}}],
            placement={"group_name": placement.name} if placement is not None else None,
            tag_specifications=[{"resource_type": "instance", "tags": tags}, {"resource_type": "volume", "tags": tags}],
            tags=tags, opts=child)

    def _chart(self, key: str, values: dict, kopts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
        c = CHARTS[key]
        repo = {"repository_opts": {"repo": c["repo"]}} if c["repo"] else {}
        # once named by the chart key alone: the alias keeps each release in place
        return k8s.helm.v3.Release(f"{self._name}-{key}", name=key, chart=c["chart"], version=c["version"],
                                   namespace=c["namespace"],
                                   create_namespace=True, atomic=True, cleanup_on_fail=True, values=values,
                                   opts=pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(
                                       depends_on=list(self._gpu_node_groups.values()) + [self._system_nodes],
                                       aliases=[pulumi.Alias(name=key)])),
                                   **repo)

    def _kubeconfig(self) -> pulumi.Output[str]:
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        return pulumi.Output.all(self._cluster.endpoint, self._cluster.certificate_authority, self._cluster.name,
                                 region).apply(
            lambda a: json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "llm",
                "clusters": [{"name": "llm", "cluster": {"server": a[0], "certificate-authority-data": a[1]["data"]}}],
                "contexts": [{"name": "llm", "context": {"cluster": "llm", "user": "llm"}}],
                "users": [{"name": "llm", "user": {"exec": {
                    "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
                    "args": ["eks", "get-token", "--cluster-name", a[2], "--region", a[3], "--output", "json"]}}}]}))


def lbc_policy() -> dict:
    """What the AWS Load Balancer Controller needs for internal NLBs with TLS listeners (IP targets), shaped like
    the controller's published iam_policy.json: read the network; create load balancers, target groups and
    security groups only with its cluster tag in the request; tag only at creation (ec2:CreateAction /
    elasticloadbalancing:CreateAction) or what already carries its tag; change only what it created. A
    CreateTags/AddTags allowed on any resource with the tag in the request would let it adopt anything
    (tag an instance's security group, then delete it): that is what tag-on-create forbids."""
    owned = {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}
    requested = {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "false"}}
    retag_owned = {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "true",
                            "aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}
    security_groups = "arn:aws:ec2:*:*:security-group/*"
    elb = ["arn:aws:elasticloadbalancing:*:*:targetgroup/*/*", "arn:aws:elasticloadbalancing:*:*:loadbalancer/net/*/*",
           "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/*/*"]
    listeners = ["arn:aws:elasticloadbalancing:*:*:listener/net/*/*/*",
                 "arn:aws:elasticloadbalancing:*:*:listener/app/*/*/*",
                 "arn:aws:elasticloadbalancing:*:*:listener-rule/net/*/*/*",
                 "arn:aws:elasticloadbalancing:*:*:listener-rule/app/*/*/*"]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "Read", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
            "ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections",
            "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeTags", "ec2:DescribeRouteTables",
            "ec2:GetSecurityGroupsForVpc", "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancerAttributes", "elasticloadbalancing:DescribeListeners",
            "elasticloadbalancing:DescribeListenerCertificates", "elasticloadbalancing:DescribeListenerAttributes",
            "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetGroupAttributes", "elasticloadbalancing:DescribeTargetHealth",
            "elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeSSLPolicies",
            "acm:ListCertificates", "acm:DescribeCertificate", "wafv2:GetWebACLForResource",
            "shield:GetSubscriptionState"]},
        {"Sid": "ServiceLinkedRole", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole", "Resource": "*",
         "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}},
        {"Sid": "CreateWithClusterTag", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:CreateSecurityGroup", "elasticloadbalancing:CreateLoadBalancer",
            "elasticloadbalancing:CreateTargetGroup"],
         "Condition": requested},
        {"Sid": "TagSecurityGroupOnCreate", "Effect": "Allow", "Action": ["ec2:CreateTags"],
         "Resource": security_groups,
         "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}, **requested}},
        {"Sid": "RetagOwnSecurityGroups", "Effect": "Allow", "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
         "Resource": security_groups, "Condition": retag_owned},
        {"Sid": "TagLoadBalancersOnCreate", "Effect": "Allow", "Action": ["elasticloadbalancing:AddTags"],
         "Resource": elb, "Condition": {"StringEquals": {"elasticloadbalancing:CreateAction": [
             "CreateTargetGroup", "CreateLoadBalancer"]}, **requested}},
        {"Sid": "RetagOwnLoadBalancers", "Effect": "Allow",
         "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"], "Resource": elb,
         "Condition": retag_owned},
        {"Sid": "TagListeners", "Effect": "Allow",
         "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"], "Resource": listeners},
        # As in the controller's published iam_policy.json: with NLB security groups and IP targets it adds
        # backend rules to the cluster security group, which EKS made and which carries no controller tag.
        {"Sid": "SecurityGroupRules", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]},
        {"Sid": "ListenersAndRules", "Effect": "Allow", "Resource": "*", "Action": [
            "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
            "elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule", "elasticloadbalancing:ModifyRule",
            "elasticloadbalancing:ModifyListener", "elasticloadbalancing:ModifyListenerAttributes",
            "elasticloadbalancing:AddListenerCertificates", "elasticloadbalancing:RemoveListenerCertificates",
            "elasticloadbalancing:SetRulePriorities"]},
        {"Sid": "RegisterTargets", "Effect": "Allow", "Resource": "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
         "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]},
        {"Sid": "ChangeOwned", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:DeleteSecurityGroup", "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:SetIpAddressType", "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:DeleteLoadBalancer",
            "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
            "elasticloadbalancing:DeleteTargetGroup"],
         "Condition": owned},
    ]}
