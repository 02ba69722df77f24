"""The stack program: reads the stack config, plans, maps config and plans to component Args (args.py) and
picks the platform component by a table lookup. The only place that reads settings for components."""
from __future__ import annotations

from collections.abc import Callable

import pulumi

from llm_platform.components import DockerPlatform, Ec2Platform, EksPlatform, Platform
from llm_platform.settings import ConfigErrors, StackConfig
from llm_platform.sizing.planner import DeploymentPlan, PlanningError, plan_stack

from .args import aws_platform_args, docker_platform_args
from .images import credential_problem, image_keys, image_overrides
from .runtime_config import load as load_config

# platform -> (component, Args builder)
PLATFORMS: dict[str, tuple[Callable[..., Platform], Callable[..., object]]] = {
    "ec2": (Ec2Platform, aws_platform_args),
    "eks": (EksPlatform, aws_platform_args),
    "docker": (DockerPlatform, docker_platform_args),
}


def build(config: StackConfig, plans: list[DeploymentPlan], stack: str) -> Platform:
    """The stack's platform component, named llm-<stack>."""
    if config.platform not in PLATFORMS:
        raise pulumi.RunError(f"llm-platform:platform: {config.platform} cannot be deployed (deployable: "
                              f"{', '.join(PLATFORMS)})")
    component, make_args = PLATFORMS[config.platform]
    secrets = pulumi.Config()
    hf_token = secrets.get_secret("hfToken") if config.hf_token else None
    docker_hub_token = secrets.get_secret("dockerHubToken") if config.docker_hub_token else None
    return component(f"llm-{stack}", make_args(config, plans, stack, hf_token=hf_token,
                                               docker_hub_token=docker_hub_token))


def main() -> None:
    """What `pulumi up` runs for a stack of this project (the root __main__.py calls it)."""
    try:
        config = load_config()
        plans = plan_stack(config)
    except (ConfigErrors, PlanningError) as exc:
        # RunError: reported to the user without a Python traceback, before any resource exists.
        raise pulumi.RunError(str(exc)) from None

    # checked before anything is created: ECR reads the Docker Hub credential when the cache rule is made
    problem = credential_problem(config, image_keys(config, plans), image_overrides(config))
    if problem:
        raise pulumi.RunError(problem)

    try:
        platform = build(config, plans, pulumi.get_stack())
    except ValueError as exc:
        raise pulumi.RunError(str(exc)) from None

    for key, value in platform.exports.items():
        pulumi.export(key, value)
    pulumi.export("deployments", {p.name: p.as_dict() for p in plans})
    pulumi.export("monthly_cost_usd", round(sum(p.monthly_cost_usd for p in plans), 2))
