"""Which images a stack runs and which pull-through cache rules it needs: pure helpers over the stack config
and the catalog, checked before any resource exists."""
from __future__ import annotations

from llm_platform.settings import StackConfig
from llm_platform.settings.images import credential_problem as _credential_problem
from llm_platform.settings.images import image_keys as _image_keys
from llm_platform.settings.images import needed_upstreams, overrides_of
from llm_platform.sizing.planner import DeploymentPlan

__all__ = ["credential_problem", "image_keys", "image_overrides", "needed_upstreams"]


def image_overrides(config: StackConfig) -> dict[str, str]:
    """The stack's own image references (images.<key>: <repo>@sha256:...), by catalog key."""
    return {} if config.images is None else overrides_of(config.images.model_dump())


def image_keys(config: StackConfig, plans: list[DeploymentPlan]) -> set[str]:
    """Which catalog images a stack runs."""
    return _image_keys(config.platform, {p.runtime for p in plans})


def credential_problem(config: StackConfig, image_keys: set[str], overrides: dict[str, str]) -> str | None:
    """Why the cache rules cannot be made as configured, or None. The settings pass (settings/images.py) already
    refuses such a config with every other problem; this is the same check on the parsed config."""
    if config.images is None:
        return None
    problem = _credential_problem(config.platform, config.images.model_dump(),
                                  {k for k in image_keys if k not in ("proxy", "awscli")}, config.docker_hub_token)
    return None if problem is None else f"llm-platform:images.docker_hub_credential_arn: {problem}"
