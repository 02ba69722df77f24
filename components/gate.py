"""DeployGate: the standing pieces of the deploy gate; the deploy workflow starts one run per model after
`pulumi up` (llm_platform/verify; README, "The deploy gate").

    DeployGate(name, DeployGateArgs(stack=..., platform="ec2" | "eks", specs=[...], ...), opts)

Both platforms: an ECR repository for the gate image (immutable content tags, scanned on push, the stack's
CMK); runners pull it by digest, the one ECR lists for this version's content tag. Metrics go into the CloudWatch
namespace LlmPlatform/<stack>/Gate, the report to the runner's log, which the deploy workflow files under
s3://<model store>/gate/<stack>/ (the VPC's S3 endpoints admit no writes); the client key is
the stack's `deploy-gate` client (its own key, so the proxies' audit log tells gate traffic apart).

ec2: an ECS cluster (Container Insights) and a Fargate task definition, run in the private subnets with no
public IP; a security group that may only reach HTTPS inside the VPC (the ALB, the interface endpoints) and
S3 through its gateway endpoint, admitted by the ALB on 443. The execution role pulls only the gate image,
writes only the gate's log group and reads only the gate's key (ECS injects it; kms:Decrypt only through
Secrets Manager). The task role may only put metrics into the gate namespace.
eks: per model, in the deployment's namespace, a `deploy-gate` service account bound by EKS Pod Identity to
a role that reads only the gate's key and puts metrics only into the gate namespace, and a ConfigMap with the
deployment's gate spec. The Job itself (llm_platform/verify/jobs.py) is rendered here, exported, and created
by the workflow on demand: a Job created by `pulumi up` would run once, not at every rollout.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from llm_platform.verify import jobs


def _trust(service: str, actions: Sequence[str] = ("sts:AssumeRole",), account: Any = None) -> Any:
    stmt = {"Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions)}
    if account is not None:
        stmt["Condition"] = {"StringEquals": {"aws:SourceAccount": account}}
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [stmt]})


@dataclass(frozen=True)
class DeployGateArgs:
    stack: str
    platform: str                                       # "ec2" | "eks"
    specs: Sequence[Mapping[str, Any]]                  # GateSpec dicts (llm_platform.verify.spec), one per model
    client_secret_arn: pulumi.Input[str]                # the deploy-gate client's key
    kms_key_arn: pulumi.Input[str]
    bucket_name: pulumi.Input[str]                      # results under gate/<stack>/ of this bucket
    bucket_arn: pulumi.Input[str]
    log_retention_days: int = 30
    protect: bool = False
    # ec2: the task's network and the ALB it calls
    endpoints: Mapping[str, str] = field(default_factory=dict)     # deployment -> https://<name>.<domain>/v1
    vpc_id: pulumi.Input[str] | None = None
    vpc_cidr: str | None = None
    subnet_ids: Sequence[pulumi.Input[str]] = ()
    alb_security_group_id: pulumi.Input[str] | None = None
    s3_prefix_list_id: pulumi.Input[str] | None = None
    ca_cert_pem: pulumi.Input[str] | None = None     # the internal CA the ALB's certificate chains to
    # eks: the cluster the deployments run in (their namespaces must exist: depends_on in opts)
    k8s_provider: pulumi.ProviderResource | None = None
    cluster_name: pulumi.Input[str] | None = None


class DeployGate(pulumi.ComponentResource):
    """Outputs: repository_url, image, exports (what the deploy workflow reads: `pulumi stack output gate`)."""

    repository_url: pulumi.Output[str]
    image: pulumi.Output[str]
    exports: dict

    def __init__(self, name: str, args: DeployGateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:gate:DeployGate", name, None, opts)
        if args.platform not in ("ec2", "eks"):
            raise ValueError(f"DeployGate runs on ec2 or eks, not {args.platform} (docker: run it locally)")
        child = pulumi.ResourceOptions(parent=self)
        stack = args.stack
        tags = {"llm-platform:stack": stack, "llm-platform:purpose": "deploy-gate"}
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        self._models = [s["deployment"]["name"] for s in args.specs]

        repo = aws.ecr.Repository(
            f"{name}-image", name=f"llm-platform/{stack}/deploy-gate", image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": args.kms_key_arn}],
            force_delete=not args.protect, tags=tags, opts=child)
        aws.ecr.LifecyclePolicy(f"{name}-image", repository=repo.name, policy=json.dumps({"rules": [{
            "rulePriority": 1, "description": "keep the 20 newest gate images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
            "action": {"type": "expire"}}]}), opts=child)
        # <account>.dkr.ecr.<region>.amazonaws.com/<name>, as ECR forms it (known at preview, unlike the attribute)
        self.repository_url = pulumi.Output.concat(account, ".dkr.ecr.", region, ".amazonaws.com/", repo.name)
        # pinned by digest (what runs is what was reviewed): the digest ECR holds for this version's content tag,
        # which the deploy workflow pushes before `pulumi up`; until then a digest that cannot be pulled
        tag = jobs.image_tag()
        listed = aws.ecr.get_images_output(repository_name=repo.name, opts=pulumi.InvokeOutputOptions(parent=self))
        digest = listed.image_ids.apply(
            lambda ids: next((i.image_digest for i in ids or [] if i.image_tag == tag), None))
        self.image = pulumi.Output.all(self.repository_url, digest).apply(
            lambda a: f"{a[0]}@{a[1] or jobs.UNBUILT_DIGEST}")
        self.exports: dict = {"platform": args.platform, "repository_url": self.repository_url,
                              "image": self.image, "image_tag": tag, "image_ready": digest.apply(bool),
                              "models": self._models,
                              "results": pulumi.Output.concat("s3://", args.bucket_name, "/",
                                                              jobs.results_prefix(stack)),
                              "metrics_namespace": jobs.metrics_namespace(stack)}
        if args.platform == "ec2":
            self._ec2(name, args, repo, region, account, tags, child)
        else:
            self._eks(name, args, region, tags, child)
        self.register_outputs({"repository_url": self.repository_url, "image": self.image, "exports": self.exports})

    # --------------------------------------------------------------------------------------------- ec2
    def _ec2(self, name: str, args: DeployGateArgs, repo: aws.ecr.Repository, region, account, tags: dict,
             child: pulumi.ResourceOptions) -> None:
        stack = args.stack
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/llm-platform/{stack}/deploy-gate",
                                       retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn,
                                       tags=tags, opts=child)
        cluster = aws.ecs.Cluster(f"{name}-cluster", name=f"llm-{stack}-deploy-gate",
                                  settings=[{"name": "containerInsights", "value": "enabled"}], tags=tags, opts=child)

        execution = aws.iam.Role(f"{name}-execution", assume_role_policy=_trust("ecs-tasks.amazonaws.com",
                                                                                 account=account),
                                 description=f"llm-platform {stack} deploy gate: ECS pulls, logs, injects the key",
                                 tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-execution", role=execution.id, policy=pulumi.Output.all(
            repo.arn, logs.arn, args.client_secret_arn, args.kms_key_arn, region).apply(
            lambda a: json.dumps(execution_policy(*a))), opts=child)
        task = aws.iam.Role(f"{name}-task", assume_role_policy=_trust("ecs-tasks.amazonaws.com", account=account),
                            description=f"llm-platform {stack} deploy gate: results and metrics only",
                            tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-task", role=task.id, policy=pulumi.Output.all(
            args.bucket_arn, args.kms_key_arn, region).apply(
            lambda a: json.dumps({"Version": "2012-10-17",
                                  "Statement": jobs.results_policy(a[0], stack, a[1], a[2])})), opts=child)

        sg = aws.ec2.SecurityGroup(f"{name}-tasks", vpc_id=args.vpc_id, description="llm-platform deploy gate tasks",
                                   tags={**tags, "Name": f"llm-{stack}-deploy-gate"}, opts=child)
        aws.vpc.SecurityGroupEgressRule(f"{name}-tasks-vpc", security_group_id=sg.id, ip_protocol="tcp",
                                        from_port=443, to_port=443, cidr_ipv4=args.vpc_cidr,
                                        description="the ALB and the interface endpoints", opts=child)
        if args.s3_prefix_list_id is not None:
            aws.vpc.SecurityGroupEgressRule(f"{name}-tasks-s3", security_group_id=sg.id, ip_protocol="tcp",
                                            from_port=443, to_port=443, prefix_list_id=args.s3_prefix_list_id,
                                            description="S3 (image layers, results) via the gateway endpoint",
                                            opts=child)
        if args.alb_security_group_id is not None:
            aws.vpc.SecurityGroupIngressRule(f"{name}-alb-from-gate", security_group_id=args.alb_security_group_id,
                                             ip_protocol="tcp", from_port=443, to_port=443,
                                             referenced_security_group_id=sg.id,
                                             description="deploy gate tasks", opts=child)

        specs_json = json.dumps({"deployments": list(args.specs)}, separators=(",", ":"))
        containers = pulumi.Output.all(self.image, args.client_secret_arn, logs.name, region, args.bucket_name,
                                       args.ca_cert_pem).apply(
            lambda a: json.dumps([jobs.container_definition(a[0], a[1], specs_json, a[5], a[2], a[3], a[4], stack)]))
        taskdef = aws.ecs.TaskDefinition(
            f"{name}-task", family=f"llm-{stack}-deploy-gate", requires_compatibilities=["FARGATE"],
            network_mode="awsvpc", cpu=jobs.FARGATE_CPU, memory=jobs.FARGATE_MEMORY,
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=execution.arn, task_role_arn=task.arn, container_definitions=containers,
            tags=tags, opts=child)
        self.exports["ecs"] = {"cluster": cluster.name, "task_definition": taskdef.arn, "container": jobs.CONTAINER,
                               "command": pulumi.Output.from_input(args.bucket_name).apply(
                                   lambda b: jobs.ecs_command(b, stack, args.ca_cert_pem is not None)),
                               "log_group": logs.name, "subnets": list(args.subnet_ids), "security_groups": [sg.id],
                               "endpoints": dict(args.endpoints)}

    # --------------------------------------------------------------------------------------------- eks
    def _eks(self, name: str, args: DeployGateArgs, region, tags: dict, child: pulumi.ResourceOptions) -> None:
        import pulumi_kubernetes as k8s

        from .eks import POD_IDENTITY_TRUST
        stack = args.stack
        role = aws.iam.Role(f"{name}-pod", assume_role_policy=POD_IDENTITY_TRUST,
                            description=f"llm-platform {stack} deploy gate pods (EKS Pod Identity)", tags=tags,
                            opts=child)
        aws.iam.RolePolicy(f"{name}-pod", role=role.id, policy=pulumi.Output.all(
            args.client_secret_arn, args.kms_key_arn, args.bucket_arn, region).apply(
            lambda a: json.dumps({"Version": "2012-10-17", "Statement": [
                *jobs.reader_policy(a[0], a[1], a[3]), *jobs.results_policy(a[2], stack, a[1], a[3])]})), opts=child)
        kopts = pulumi.ResourceOptions(parent=self, provider=args.k8s_provider)
        manifests = {}
        for spec in args.specs:
            model = spec["deployment"]["name"]
            ns = f"llm-{model}"
            meta = k8s.meta.v1.ObjectMetaArgs(namespace=ns, labels={
                "app.kubernetes.io/name": "deploy-gate", "app.kubernetes.io/part-of": "llm-platform",
                "llm-platform/deployment": model})
            sa = k8s.core.v1.ServiceAccount(f"{name}-{model}-sa", metadata=k8s.meta.v1.ObjectMetaArgs(
                name=jobs.SERVICE_ACCOUNT, namespace=ns, labels=meta.labels), automount_service_account_token=False,
                opts=kopts)
            aws.eks.PodIdentityAssociation(f"{name}-{model}", cluster_name=args.cluster_name, namespace=ns,
                                           service_account=sa.metadata.name, role_arn=role.arn, tags=tags,
                                           opts=child)
            manifests[model] = pulumi.Output.all(self.image, args.client_secret_arn, args.bucket_name, region).apply(
                lambda a, m=model: jobs.job_manifest(m, a[0], a[1], a[2], stack, a[3]))
            # the gate pod talks to its deployment's proxy, DNS, AWS APIs over HTTPS and the Pod Identity agent;
            # nothing talks to it
            k8s.networking.v1.NetworkPolicy(f"{name}-{model}-network-policy", metadata=k8s.meta.v1.ObjectMetaArgs(
                name=jobs.SERVICE_ACCOUNT, namespace=ns, labels=meta.labels),
                spec=network_policy(model, args.vpc_cidr or "10.0.0.0/8"), opts=kopts)
            # the gate spec the Job mounts, and the Job itself (`kubectl create -f` it from here or the stack output)
            k8s.core.v1.ConfigMap(f"{name}-{model}-spec", metadata=k8s.meta.v1.ObjectMetaArgs(
                name=jobs.CONFIG_MAP, namespace=ns, labels=meta.labels),
                data={f"{model}.json": json.dumps({"deployments": [dict(spec)]}, indent=1),
                      "job.json": manifests[model].apply(lambda m: json.dumps(m, indent=1))}, opts=kopts)
        self.exports["jobs"] = manifests
        self.exports["cluster_name"] = args.cluster_name


def execution_policy(repo_arn: str, log_group_arn: str, secret_arn: str, kms_key_arn: str, region: str) -> dict:
    """What ECS needs to start the gate task, for this gate only: pull its image, write its log group, inject
    its key."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "EcrAuth", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "PullTheGateImage", "Effect": "Allow", "Resource": repo_arn,
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]},
        {"Sid": "DecryptTheGateImage", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": kms_key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"ecr.{region}.amazonaws.com"}}},
        {"Sid": "WriteTheGateLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        *jobs.reader_policy(secret_arn, kms_key_arn, region)]}


def network_policy(model: str, vpc_cidr: str) -> dict:
    """The gate pods' NetworkPolicy spec in the deployment's namespace (selected by the Job's role label): like
    the serving pods', nothing leaves the VPC."""
    return {
        "podSelector": {"matchLabels": {"llm-platform/role": "deploy-gate"}},
        "policyTypes": ["Ingress", "Egress"], "ingress": [],
        "egress": [
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                     "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
             "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": model,
                                                     "llm-platform/deployment": model}}}],
             "ports": [{"port": jobs.PROXY_PORT, "protocol": "TCP"}]},
            # Secrets Manager and CloudWatch through their interface endpoints
            {"to": [{"ipBlock": {"cidr": vpc_cidr}}], "ports": [{"port": 443, "protocol": "TCP"}]},
            {"to": [{"ipBlock": {"cidr": jobs.POD_IDENTITY_AGENT}}], "ports": [{"port": 80, "protocol": "TCP"}]},
        ]}
