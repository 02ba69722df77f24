"""Plan one model outside a stack of ours: for programs that compose the components themselves.

    plan = plan_deployment({"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "precision": "bf16"},
                           environment="prod", platform="ec2")

The spec has the fields of a `models[]` entry (llm_platform.settings.ModelSpec); `environment` brings its rules
(prod: at least two replicas, pinned revision, checksums and provenance), `platform` which instances count.
Errors name the spec's own keys (`model.precision`), never a stack key.
"""
from __future__ import annotations

from typing import Any

from llm_platform.settings import ConfigError, ConfigErrors, parse

from .planner import DeploymentPlan, PlanningError, plan_stack

_PREFIX = "llm-platform:models[0]"


def _own_paths(errors: list[ConfigError]) -> list[ConfigError]:
    return [ConfigError("model" + e.path[len(_PREFIX):] if e.path.startswith(_PREFIX) else e.path, e.message)
            for e in errors]


def plan_deployment(spec: dict[str, Any], *, environment: str = "prod", platform: str = "ec2",
                    region: str = "us-east-1", local: dict[str, Any] | None = None) -> DeploymentPlan:
    """The DeploymentPlan of one model spec (ConfigErrors or PlanningError with `model.<key>` paths)."""
    raw: dict[str, Any] = {
        "aws:region": region, "llm-platform:environment": environment, "llm-platform:platform": platform,
        # the planner reads none of these: they only make the planning context a valid stack, so that every
        # error is about the model (the program that composes the components owns network, keys, alarms, images)
        "llm-platform:network": {"allowed_client_cidrs": ["192.168.0.0/16"]},
        "llm-platform:api": {"clients": ["planner"]},
        "llm-platform:monitoring": {"alarm_email": "planner@example.invalid"},
        "llm-platform:images": {"create_cache_rules": False},
        "llm-platform:models": [spec]}
    if local is not None:
        raw["llm-platform:local"] = local
    try:
        return plan_stack(parse(raw))[0]
    except ConfigErrors as exc:
        raise ConfigErrors(_own_paths(exc.errors)) from None
    except PlanningError as exc:
        raise PlanningError(_own_paths(exc.errors)) from None
