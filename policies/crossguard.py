"""The rules as CrossGuard policies, for `pulumi preview|up --policy-pack policies`.

Each Rule becomes a ResourceValidationPolicy or StackValidationPolicy with its metadata (description,
severity, remediation, guide reference as the URL anchor text, config schema). The level declared is the
rule's prod level (no config: judge as prod); `policies/config/<env>.json` sets each policy's
`environment` and the levels that differ (`python -m policies.levels <env>` writes them).

Unknown values (preview): a check that needs one yields a note instead of a violation; when a rule has no
violation but such a note, the adapter raises the SDK's UnknownValueError, which the CLI shows as an
advisory "can't run policy during preview" diagnostic. The same rule runs again with resolved values
during the update.
"""
from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import serialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from .core import JSON, Finding, Resource, Rule, Stack, normalize
from .rules import ALL

GUIDE_URL = "https://github.com/llm-platform/llm-platform/blob/main/policies/README.md#"

_LEVEL = {"advisory": EnforcementLevel.ADVISORY, "mandatory": EnforcementLevel.MANDATORY,
          "disabled": EnforcementLevel.DISABLED}
_SEVERITY = {"low": Severity.LOW, "medium": Severity.MEDIUM, "high": Severity.HIGH, "critical": Severity.CRITICAL}


def _plain(props: Any) -> JSON:
    """The SDK's unknown-checking proxy unwrapped to plain data, sentinels normalised."""
    raw = serialize_properties(props) if props is not None else {}
    out = normalize(raw)
    return out if isinstance(out, dict) else {}


def _resource(args: ResourceValidationArgs) -> Resource:
    return Resource(type=args.resource_type, name=args.name, props=_plain(args.props), urn=args.urn,
                    parent=getattr(args.opts, "parent", None), protect=getattr(args.opts, "protect", None))


def _stack_resource(r: PolicyResource) -> Resource:
    return Resource(type=r.resource_type, name=r.name, props=_plain(r.props), urn=r.urn,
                    parent=r.parent.urn if r.parent is not None else None,
                    protect=getattr(r.opts, "protect", None),
                    property_dependencies={k: [d.urn for d in v] for k, v in (r.property_dependencies or {}).items()},
                    dependencies=[d.urn for d in r.dependencies or []])


def _report(rule: Rule, findings: list[Finding], report: ReportViolation, stack_level: bool) -> None:
    # The CLI gives one enforcement level per policy: a finding meant as advisory only (e.g. "no allow-list
    # configured") would block a mandatory policy, so the CLI adapter leaves it to the offline tools.
    findings = [f for f in findings if not f.advisory]
    violations = [f for f in findings if not f.undetermined]
    for f in violations:
        if stack_level:
            report(f.message, f.resource.urn if f.resource is not None and f.resource.urn else None)
        else:
            report(f.message, None)
    notes = [f for f in findings if f.undetermined]
    if notes and not violations:
        raise UnknownValueError(UNKNOWN_STRING_VALUE, [notes[0].message])


def _metadata(rule: Rule) -> dict[str, Any]:
    return dict(
        description=rule.description,
        enforcement_level=_LEVEL[rule.levels["prod"]],
        config_schema=PolicyConfigSchema(properties=rule.config_schema()),
        severity=_SEVERITY[rule.severity],
        remediation_steps=rule.remediation,
        url=GUIDE_URL + rule.name,
        tags=["llm", rule.kind, "guide: " + rule.guide.split(";")[0]],
        display_name=rule.name.replace("-", " ").capitalize(),
    )


def resource_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        ctx = rule.context(args.get_config())
        r = _resource(args)
        if not rule.applies_to(r):
            return
        _report(rule, rule.run(r, ctx), report, stack_level=False)
    return ResourceValidationPolicy(name=rule.name, validate=validate, **_metadata(rule))


def stack_policy(rule: Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        ctx = rule.context(args.get_config())
        stack = Stack(_stack_resource(r) for r in args.resources)
        _report(rule, rule.run(stack, ctx), report, stack_level=True)
    return StackValidationPolicy(name=rule.name, validate=validate, **_metadata(rule))


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [resource_policy(r) if r.kind == "resource" else stack_policy(r) for r in ALL]
