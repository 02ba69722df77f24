"""Run every rule over a set of resources and resolve each violation's enforcement level.

The level of a rule, as `pulumi preview --policy-pack policies --policy-pack-config cfg.json` resolves
it: the rule's own `enforcementLevel` in the config, else the config's `all`, else the rule's level
for the environment (the rule's `environment` property in the config, else the caller's
environment, else prod). Used by `policies.analyze` (stack exports) and `plan.py` (recordings).
"""
from __future__ import annotations

from collections.abc import Iterable

from .core import DEFAULT_ENVIRONMENT, ENVIRONMENTS, JSON, Finding, Resource, Rule, Stack
from .rules import ALL

VALID_LEVELS = ("advisory", "mandatory", "remediate", "disabled")


class ConfigError(ValueError):
    pass


def check_config(config: JSON | None) -> JSON:
    """The policy pack config as the CLI accepts it: {policy: level | {enforcementLevel?, props...}}."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError("the policy config must be a JSON object keyed by policy name")
    known = {r.name for r in ALL} | {"all"}
    for k, v in config.items():
        if k not in known:
            raise ConfigError(f"{k!r} is not a policy of this pack (known: all, {', '.join(sorted(known - {'all'}))})")
        if isinstance(v, str):
            if v not in VALID_LEVELS:
                raise ConfigError(f"{k}: {v!r} is not an enforcement level ({', '.join(VALID_LEVELS)})")
        elif isinstance(v, dict):
            lvl = v.get("enforcementLevel")
            if lvl is not None and lvl not in VALID_LEVELS:
                raise ConfigError(f"{k}.enforcementLevel: {lvl!r} is not an enforcement level")
            env = v.get("environment")
            if env is not None and env not in ENVIRONMENTS:
                raise ConfigError(f"{k}.environment: {env!r} is not one of {', '.join(ENVIRONMENTS)}")
        else:
            raise ConfigError(f"{k}: must be an enforcement level or an object")
    return config


def level_of(rule: Rule, config: JSON, environment: str | None) -> tuple[str, JSON, str]:
    """(level, the rule's properties, environment) for one rule under a pack config."""
    entry = config.get(rule.name)
    props = dict(entry) if isinstance(entry, dict) else {}
    ctx = rule.context(props, None if "environment" in props else environment)
    level = rule.levels[ctx.environment]
    if level != "disabled":
        allv = config.get("all")
        all_level = allv if isinstance(allv, str) else \
            allv.get("enforcementLevel") if isinstance(allv, dict) else None
        if all_level:
            level = all_level
    explicit = entry if isinstance(entry, str) else props.get("enforcementLevel")
    if explicit:
        level = explicit
    if level == "remediate":
        level = "mandatory"
    return level, props, ctx.environment


def evaluate(resources: Iterable[Resource], config: JSON | None = None,
             environment: str | None = None) -> tuple[list[JSON], list[JSON]]:
    """(violations, undetermined) as dicts {policy, enforcement, severity, resource, type, urn, message}."""
    config = check_config(config)
    resources = list(resources)
    stack = Stack(resources)
    violations: list[JSON] = []
    notes: list[JSON] = []
    seen: set[tuple[str, str | None, str | None, str, bool]] = set()
    for rule in ALL:
        level, props, env = level_of(rule, config, environment or DEFAULT_ENVIRONMENT)
        if level == "disabled":
            continue
        ctx = rule.context(props, env)
        findings: list[Finding] = []
        if rule.kind == "resource":
            for r in resources:
                findings.extend(rule.run(r, ctx))
        else:
            findings.extend(rule.run(stack, ctx))
        for f in findings:
            res = f.resource
            item = {"policy": rule.name, "enforcement": "advisory" if f.advisory else level, "severity": rule.severity,
                    "resource": res.name if res is not None else None,
                    "type": res.original_type if res is not None else None,
                    "urn": res.urn if res is not None else None, "message": f.message}
            key = (rule.name, item["urn"] or item["resource"], item["type"], f.message, f.undetermined)
            if key in seen:
                continue
            seen.add(key)
            (notes if f.undetermined else violations).append(item)
    return violations, notes


def has_mandatory(violations: list[JSON]) -> bool:
    return any(v["enforcement"] == "mandatory" for v in violations)


def environment_config(environment: str) -> dict[str, JSON]:
    """The pack config that makes the CLI judge a stack of this environment exactly as the offline engine
    does: every policy learns the environment, levels that differ from prod's are explicit."""
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment {environment!r}")
    out: dict[str, JSON] = {}
    for rule in ALL:
        entry: JSON = {"environment": environment}
        lvl = rule.levels[environment]
        if lvl != "mandatory":
            entry["enforcementLevel"] = lvl
        out[rule.name] = entry
    return out
