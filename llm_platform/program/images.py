"""Which images a stack runs and which pull-through cache rules it needs: pure helpers over the stack config
and the catalog, checked before any resource exists."""
from __future__ import annotations

from llm_platform import catalog
from llm_platform.settings import StackConfig
from llm_platform.sizing.planner import DeploymentPlan


def image_overrides(config: StackConfig) -> dict[str, str]:
    """The stack's own image references (images.<key>: <repo>@sha256:...), by catalog key."""
    if config.images is None:
        return {}
    return {k: v for k, v in config.images.model_dump().items() if k in catalog.load().images and v}


def image_keys(config: StackConfig, plans: list[DeploymentPlan]) -> set[str]:
    """Which catalog images a stack runs."""
    return {p.runtime for p in plans} | {"proxy"} | ({"awscli"} if config.platform == "eks" else set())


def needed_upstreams(image_keys: set[str], overrides: dict[str, str]) -> set[str]:
    """The upstream registries the cache must front: those of every image not overridden by the stack."""
    images = catalog.load().images
    return {images[k]["upstream"] for k in image_keys if k not in overrides and images[k].get("available", True)}


def credential_problem(config: StackConfig, image_keys: set[str], overrides: dict[str, str]) -> str | None:
    """Why the cache rules cannot be made as configured (checked before any resource exists), or None."""
    images = config.images
    if images is None or not images.create_cache_rules or config.platform == "docker":
        return None
    urls = catalog.load().image_upstreams
    needs = [u for u in needed_upstreams(image_keys, overrides) if urls[u]["credential"] == "required"]
    if not needs or images.docker_hub_credential_arn or (images.docker_hub_username and config.docker_hub_token):
        return None
    keys = sorted(k for k in image_keys if catalog.load().images[k].get("upstream") in needs and k not in overrides)
    return ("llm-platform:images.docker_hub_credential_arn: the " + " and ".join(keys) + " image"
            + ("s come" if len(keys) > 1 else " comes") + " from Docker Hub through an ECR pull-through cache, which "
            "needs a credential before the rule can be made: set images.docker_hub_credential_arn to a Secrets "
            "Manager secret named ecr-pullthroughcache/<name> (keys username, accessToken); or set "
            "images.docker_hub_username and run `pulumi config set --secret dockerHubToken <read-only token>`; or "
            "override the images from your own registry (images.vllm, images.ollama); or, when another stack in "
            "this account and region owns the rules, set images.create_cache_rules to false")
