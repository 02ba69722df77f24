"""Rate limiting and input limits: a WAF web ACL on every inference load balancer, with a rate-based
rule and a request-body size limit."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core import (
    JSON,
    UNKNOWN,
    Context,
    Finding,
    Resource,
    Stack,
    as_json,
    as_list,
    as_num,
    get,
    k8s_kind,
    levels,
    opaque,
    rule,
    undetermined,
    violation,
)
from ..topology import LB, topology

WEB_ACL = "aws:wafv2/webAcl:WebAcl"
WEB_ACL_ASSOC = "aws:wafv2/webAclAssociation:WebAclAssociation"
WAFREGIONAL_ASSOC = "aws:wafregional/webAclAssociation:WebAclAssociation"


def _inference_lbs(stack: Stack) -> list[tuple[Resource, Any]]:
    """(load balancer, reason) for every ALB that fronts inference, failing closed: an ALB whose routes
    cannot be resolved counts as inference when the stack serves a model."""
    topo = topology(stack)
    groups = topo.inference_groups()
    inference_tgs = {t.key for g in groups for t in topo.target_groups_of(g)}
    out = []
    for lb in stack.of_type(LB):
        lbt = lb.get("loadBalancerType")
        tgs = topo.target_groups_of_lb(lb)
        if tgs is not None and tgs and inference_tgs and not any(t.key in inference_tgs for t in tgs):
            continue        # routes only to things that do not serve a model
        if tgs is not None and not tgs and groups and inference_tgs:
            continue        # no routes at all: nothing to protect
        out.append((lb, lbt))
    return out


@rule(
    name="waf-on-inference-lb",
    description="Every application load balancer in front of inference has a WAFv2 web ACL associated "
                "(rate limiting, body size limits); network load balancers cannot carry one and fail. "
                "Kubernetes ALB ingresses name a web ACL.",
    must="Rate limiting and DDoS protection; input validation (request size)",
    guide="Security Considerations > Network Security (recommended: rate limiting) and Input Validation",
    severity="high",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, WAF costs $5/month per ACL plus requests and dev traffic comes from a VPN",
    remediation="aws.wafv2.WebAcl(scope='REGIONAL', rules=[rate-based, body size]) and "
                "aws.wafv2.WebAclAssociation(resource_arn=alb.arn, web_acl_arn=acl.arn); "
                "front NLB-only designs with an internal ALB.",
    kind="stack",
)
def waf_on_inference_lb(stack: Stack, ctx: Context) -> Iterator[Finding]:
    assocs = stack.of_type(WEB_ACL_ASSOC, WAFREGIONAL_ASSOC)
    unresolved = [a for a in assocs if a.get("resourceArn") is UNKNOWN]
    for lb, lbt in _inference_lbs(stack):
        if isinstance(lbt, str) and lbt.lower() == "network":
            if topology(stack).inference_groups():
                yield violation("inference is fronted by a network load balancer, which cannot carry a WAF web ACL: "
                                "no rate limit or body size limit protects the model servers", lb)
            continue
        if isinstance(lbt, str) and lbt.lower() == "gateway":
            continue
        if any(stack.referenced(a, "resourceArn", a.get("resourceArn"), [lb]) for a in assocs):
            continue
        if unresolved:
            yield undetermined("a web ACL association's resourceArn is not known yet", lb)
            continue
        yield violation("no WAF web ACL is associated with this load balancer: nothing rate-limits clients or "
                        "caps request bodies before they reach the model servers", lb)
    for r in stack.resources:
        if k8s_kind(r.type) == "Ingress" and topology(stack).inference_groups():
            ann = r.get("metadata.annotations") or {}
            cls = r.get("spec.ingressClassName") or (ann.get("kubernetes.io/ingress.class")
                                                     if isinstance(ann, dict) else None)
            if isinstance(ann, dict) and (cls == "alb" or any(k.startswith("alb.ingress.kubernetes.io/") for k in ann)):
                if not (ann.get("alb.ingress.kubernetes.io/wafv2-acl-arn")
                        or ann.get("alb.ingress.kubernetes.io/web-acl-id")):
                    yield violation("the ALB ingress names no WAF web ACL (alb.ingress.kubernetes.io/wafv2-acl-arn)", r)


def _statements(stmt: Any) -> Iterator[JSON]:
    """A statement and every statement nested in and/or/not, rate-based scope-downs."""
    if not isinstance(stmt, dict):
        return
    yield stmt
    for key in ("andStatement", "orStatement"):
        for s in as_list(get(stmt, key + ".statements")):
            yield from _statements(s)
    yield from _statements(get(stmt, "notStatement.statement"))
    yield from _statements(get(stmt, "rateBasedStatement.scopeDownStatement"))


def _blocks(rule_: Any) -> bool:
    action = get(rule_, "action")
    if isinstance(action, dict) and (get(action, "block") is not None or get(action, "captcha") is not None
                                     or get(action, "challenge") is not None):
        return True
    override = get(rule_, "overrideAction")
    return isinstance(override, dict) and get(override, "none") is not None


@rule(
    name="waf-rate-and-size-limits",
    description="Regional WAF web ACLs carry a blocking rate-based rule (at most maxRequestsPer5Min per client "
                "when configured) and a rule that blocks request bodies larger than maxBodyBytes (a size "
                "constraint on the body or on the Content-Length header's length, or AWS's common rule set "
                "whose SizeRestrictions_BODY does it).",
    must="Rate limiting; validate and sanitize all inputs (prompt length limits)",
    guide="Security Considerations > Input Validation and Sanitization; Do and Don't Examples (SafeRequest)",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, follows waf-on-inference-lb",
    remediation="Add a rule with rateBasedStatement {limit: <requests per 5 min>, aggregateKeyType: 'IP'} and "
                "action block, and one with sizeConstraintStatement {fieldToMatch: {body: {oversizeHandling: "
                "'MATCH'}}, comparisonOperator: 'GT', size: <max_prompt_bytes>} and action block.",
    types=(WEB_ACL,),
    config={"maxRequestsPer5Min": {"type": "number", "description": "largest rate limit allowed"},
            "maxBodyBytes": {"type": "number", "default": 10485760,
                             "description": "largest body size limit allowed (bytes)"}},
)
def waf_limits(r: Resource, ctx: Context) -> Iterator[Finding]:
    scope = r.get("scope")
    if isinstance(scope, str) and scope.upper() == "CLOUDFRONT":
        return
    rules = r.get("rules")
    if rules is None and r.get("ruleJson") is not None:
        rules = as_json(r.get("ruleJson"))
    if opaque(rules):
        yield undetermined("rules is not known yet")
        return
    rate_ok = size_ok = False
    max_rate = ctx.config.get("maxRequestsPer5Min")
    max_body = ctx.config.get("maxBodyBytes")
    for ru in as_list(rules):
        if not isinstance(ru, dict):
            continue
        blocks = _blocks(ru)
        for st in _statements(get(ru, "statement")):
            rb = get(st, "rateBasedStatement")
            if isinstance(rb, dict) and blocks:
                limit = as_num(get(rb, "limit"))
                if opaque(limit):
                    yield undetermined("a rate-based rule's limit is not known yet")
                    rate_ok = True
                elif max_rate is not None and isinstance(limit, float) and limit > float(max_rate):
                    yield violation(f"rule {get(ru, 'name')!r} allows {limit:.0f} requests per 5 minutes per client, "
                                    f"above maxRequestsPer5Min {max_rate}")
                    rate_ok = True
                else:
                    rate_ok = True
            sc = get(st, "sizeConstraintStatement")
            if isinstance(sc, dict) and blocks and str(get(sc, "comparisonOperator", "")).upper() in ("GT", "GE"):
                size = as_num(get(sc, "size"))
                header = get(sc, "fieldToMatch.singleHeader.name")
                if get(sc, "fieldToMatch.body") is not None:
                    limit = size
                elif isinstance(header, str) and header.lower() == "content-length" and isinstance(size, float):
                    limit = 10 ** size - 1      # the header's length in digits: 6 -> bodies up to 999,999 bytes
                else:
                    continue
                if isinstance(limit, float) and max_body is not None and limit > float(max_body):
                    yield violation(f"rule {get(ru, 'name')!r} lets bodies up to {limit:.0f} bytes through, above "
                                    f"maxBodyBytes {max_body}")
                size_ok = True
            mg = get(st, "managedRuleGroupStatement")
            if isinstance(mg, dict) and get(mg, "name") == "AWSManagedRulesCommonRuleSet" and blocks:
                overrides = as_list(get(mg, "ruleActionOverrides")) + as_list(get(mg, "excludedRules"))
                excluded = {get(x, "name") for x in overrides}
                if "SizeRestrictions_BODY" not in excluded:
                    size_ok = True
    if not rate_ok:
        yield violation("the web ACL has no blocking rate-based rule: one client can saturate the GPUs")
    if not size_ok:
        yield violation("the web ACL has no rule blocking oversized request bodies: prompts of any size reach "
                        "the model servers")


RULES = [waf_on_inference_lb, waf_limits]
