"""ModelDeployment: one model's serving, whatever the platform, built from its DeploymentPlan.

It owns everything that exists per model: on EC2 the GPU Auto Scaling group (GpuInstanceGroup) and the
model's CloudWatch alarms; on EKS its Kubernetes workload (KubernetesServing: namespace, pods, NLB, network
policy, autoscaler, alert rules); on Docker its runtime and proxy containers. Exactly one of `ec2`, `eks`,
`docker` is given. The plan is the component's input (`pulumi stack export` shows what was sized and why).

    ModelDeployment(f"{platform}-{plan.name}", ModelDeploymentArgs(plan=plan, ec2=Ec2Serving(...)), opts)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from llm_platform.sizing.planner import DeploymentPlan

from .gpu_fleet import GpuInstanceGroup, GpuInstanceGroupArgs
from .k8s_serving import KubernetesServing, KubernetesServingArgs
from .local_docker import DockerServingArgs, docker_serving
from .monitoring import AlarmArgs, deployment_alarms


@dataclass(frozen=True)
class Ec2Serving:
    fleet: GpuInstanceGroupArgs
    alarms: AlarmArgs


@dataclass(frozen=True)
class ModelDeploymentArgs:
    plan: DeploymentPlan
    ec2: Ec2Serving | None = None
    eks: KubernetesServingArgs | None = None
    docker: DockerServingArgs | None = None
    after: Sequence[pulumi.Resource] = ()       # what the fleet waits for (e.g. the image cache rules)


class ModelDeployment(pulumi.ComponentResource):
    """Outputs: asg_name (ec2), hostname (eks: the internal NLB), container_name (docker: the runtime's);
    None on the other platforms."""

    asg_name: pulumi.Output[str] | None
    hostname: pulumi.Output[str | None] | None
    container_name: pulumi.Output[str] | None

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: pulumi.ResourceOptions | None = None):
        targets = [t for t in (args.ec2, args.eks, args.docker) if t is not None]
        if len(targets) != 1:
            raise ValueError(f"ModelDeploymentArgs for {args.plan.name}: give exactly one of ec2, eks, docker "
                             f"(got {len(targets)})")
        for given in (args.ec2.fleet if args.ec2 else None, args.eks, args.docker):
            if given is not None and given.plan is not args.plan:
                raise ValueError(f"ModelDeploymentArgs for {args.plan.name}: the serving args carry another plan "
                                 f"({given.plan.name})")
        super().__init__("llm-platform:index:ModelDeployment", name, {"plan": args.plan.as_dict()}, opts)
        plan = args.plan
        self.asg_name = self.hostname = self.container_name = None
        if args.ec2 is not None:
            fleet = GpuInstanceGroup(f"{name}-fleet", args.ec2.fleet,
                                     pulumi.ResourceOptions(parent=self, depends_on=list(args.after)))
            deployment_alarms(name, plan, args.ec2.alarms, fleet.asg_name, parent=self)
            self.asg_name = fleet.asg_name
        elif args.eks is not None:
            # Its objects were once named after the deployment alone (<plan>-namespace): the second alias lets
            # them follow (a child named <this>-<role> inherits <alias>-<role>).
            serving = KubernetesServing(f"{name}-k8s", args.eks, pulumi.ResourceOptions(
                parent=self, depends_on=list(args.after), aliases=[pulumi.Alias(name=plan.name)]))
            self.hostname = serving.hostname
        elif args.docker is not None:
            runtime, _proxy = docker_serving(name, args.docker, parent=self)
            self.container_name = runtime.name
        self.register_outputs({"asg_name": self.asg_name, "hostname": self.hostname,
                               "container_name": self.container_name})
