"""LlmPlatform: the root component. Wires one ModelDeployment per plan under it.

The platform-specific components (network, secrets, model store, GPU groups, load balancer,
monitoring) hang under these; every child receives its DeploymentPlan and never re-sizes it.
"""
from __future__ import annotations

from typing import Optional

import pulumi

from settings import StackConfig
from sizing.planner import DeploymentPlan


class ModelDeployment(pulumi.ComponentResource):
    """One model's serving fleet; its outputs are the plan it was built from."""

    def __init__(self, name: str, plan: DeploymentPlan, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:index:ModelDeployment", name, {"plan": plan.as_dict()}, opts)
        self.plan = plan
        self.instance_type = pulumi.Output.from_input(plan.instance_type)
        self.register_outputs({"plan": plan.as_dict()})


class LlmPlatform(pulumi.ComponentResource):
    def __init__(self, name: str, config: StackConfig, plans: list[DeploymentPlan],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:index:LlmPlatform", name,
                         {"environment": config.environment, "platform": config.platform}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.deployments = {p.name: ModelDeployment(p.name, p, child) for p in plans}
        self.register_outputs({"deployments": {n: d.plan.as_dict() for n, d in self.deployments.items()}})
