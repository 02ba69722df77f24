"""Which container images a stack pulls through the ECR cache, and whether the Docker Hub credential it then
needs is configured. Pure (catalog facts and the raw config only), so the settings pass reports a missing
credential together with every other config problem, before anything is sized or created; the ImageCache
component (components/images.py) uses the same functions."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llm_platform import catalog


def image_keys(platform: str, runtimes: Iterable[str]) -> set[str]:
    """The catalog images a stack runs: each runtime, the auth proxy, and the AWS CLI init container on eks."""
    return set(runtimes) | {"proxy"} | ({"awscli"} if platform == "eks" else set())


def overrides_of(images: dict[str, Any]) -> dict[str, str]:
    """The stack's own image references (images.<key>: <repo>@sha256:...), by catalog key."""
    known = catalog.load().images
    return {k: v for k, v in images.items() if k in known and v}


def needed_upstreams(keys: set[str], overrides: dict[str, str]) -> set[str]:
    images = catalog.load().images
    return {images[k]["upstream"] for k in keys if k not in overrides and images[k].get("available", True)}


def credential_problem(platform: str, images: dict[str, Any], runtimes: Iterable[str],
                       docker_hub_token: bool) -> str | None:
    """Why the pull-through cache rules cannot be made as configured, or None. `images` is the raw
    `llm-platform:images` mapping (ECR reads the credential when the rule is created, so it must exist first)."""
    if platform == "docker" or images.get("create_cache_rules", True) is False:
        return None
    cat = catalog.load()
    keys = image_keys(platform, runtimes) & set(cat.images)
    overrides = overrides_of(images)
    urls = cat.image_upstreams
    needs = [u for u in needed_upstreams(keys, overrides) if urls[u]["credential"] == "required"]
    if not needs or images.get("docker_hub_credential_arn") or (images.get("docker_hub_username") and docker_hub_token):
        return None
    names = sorted(k for k in keys if cat.images[k].get("upstream") in needs and k not in overrides)
    return ("the " + " and ".join(names) + " image" + ("s come" if len(names) > 1 else " comes")
            + " from Docker Hub through an ECR pull-through cache, which needs a credential before the rule can be "
            "made: set images.docker_hub_credential_arn to a Secrets Manager secret named "
            "ecr-pullthroughcache/<name> (keys username, accessToken); or set images.docker_hub_username and run "
            "`pulumi config set --secret dockerHubToken <read-only token>`; or override the images from your own "
            "registry (images.vllm, images.ollama); or, when another stack in this account and region owns the "
            "rules, set images.create_cache_rules to false")
