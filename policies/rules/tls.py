"""TLS for all API traffic: HTTPS/TLS listeners with an exact policy allow-list, no plain HTTP to
targets, invalid headers dropped."""
from __future__ import annotations

from ..core import as_bool, as_list, get, k8s_kind, levels, opaque, rule, undetermined, violation

LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LB = "aws:lb/loadBalancer:LoadBalancer"
ELB = "aws:elb/loadBalancer:LoadBalancer"

# TLS 1.2 + 1.3 (or 1.3 only) with forward-secret AEAD suites: ELBSecurityPolicy-TLS13-1-2-2021-06 or
# stricter. The Ext0/Ext1/Ext2 variants re-add CBC and SHA-1 suites; ELBSecurityPolicy-2016-08 (the
# API's default when none is given) allows TLS 1.0.
DEFAULT_SSL_POLICIES = [
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-PQ-2025-09",
]


def _redirects_to_https(actions) -> bool:
    acts = [a for a in as_list(actions) if isinstance(a, dict)]
    return bool(acts) and all(str(get(a, "type", "")).lower() == "redirect" and
                              str(get(a, "redirect.protocol", "")).upper() == "HTTPS" for a in acts)


@rule(
    name="https-listeners",
    description="Load-balancer listeners speak HTTPS (ALB) or TLS (NLB) with an SSL policy from the allow-list "
                "(TLS 1.2/1.3 only); a plain HTTP listener may only redirect to HTTPS. Kubernetes ingresses "
                "terminate TLS. Classic ELB listeners use HTTPS/SSL.",
    must="TLS for all API communications",
    guide="Security Considerations > Network Security; Do and Don't Examples (ssl_protocols TLSv1.2 TLSv1.3)",
    severity="high",
    levels=levels(dev="mandatory"),
    remediation="protocol 'HTTPS', sslPolicy 'ELBSecurityPolicy-TLS13-1-2-2021-06' (or stricter, see "
                "allowedSslPolicies), certificateArn from ACM; turn port-80 listeners into redirects to HTTPS.",
    types=(LISTENER, ELB, "k8s:Ingress"),
    config={"allowedSslPolicies": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_SSL_POLICIES,
                                   "description": "exact ELB security policy names a listener may use"}},
)
def https_listeners(r, ctx):
    allowed = ctx.config.get("allowedSslPolicies") or DEFAULT_SSL_POLICIES
    if k8s_kind(r.type) == "Ingress":
        ann = r.get("metadata.annotations") or {}
        tls = r.get("spec.tls")
        if opaque(tls) or opaque(ann):
            yield undetermined("spec.tls is not known yet")
            return
        if not as_list(tls) and not (isinstance(ann, dict) and ann.get("alb.ingress.kubernetes.io/certificate-arn")):
            yield violation("the ingress has no spec.tls and no ALB certificate: the API is served over plain HTTP")
        return
    if r.type == ELB:
        for i, l in enumerate(as_list(r.get("listeners"))):
            proto = str(get(l, "lbProtocol", "")).upper()
            if proto in ("HTTP", "TCP"):
                yield violation(f"listeners[{i}] uses {proto}: the API must be served over HTTPS/SSL")
        return
    proto = r.get("protocol")
    if opaque(proto):
        yield undetermined("protocol is not known yet")
        return
    proto = str(proto or "").upper()
    if proto in ("HTTPS", "TLS"):
        pol = r.get("sslPolicy")
        if opaque(pol):
            yield undetermined("sslPolicy is not known yet")
        elif pol is None:
            yield violation(f"the {proto} listener sets no sslPolicy: AWS then applies ELBSecurityPolicy-2016-08, "
                            "which still accepts TLS 1.0 and 1.1")
        elif pol not in allowed:
            yield violation(f"sslPolicy {pol!r} is not in the allow-list (TLS 1.2/1.3 only): use "
                            f"{allowed[0]} or stricter")
        return
    if proto == "HTTP" and _redirects_to_https(r.get("defaultActions")):
        return
    if opaque(r.get("defaultActions")):
        yield undetermined("defaultActions is not known yet")
        return
    yield violation(f"the listener speaks {proto or 'HTTP (default)'}: prompts and API keys would cross the "
                    "network in clear text; use HTTPS/TLS or make it a redirect to HTTPS")


@rule(
    name="https-target-groups",
    description="Target groups do not forward plain HTTP: the hop from the load balancer to the instance's "
                "TLS proxy is encrypted too (HTTPS for ALB, TLS for NLB).",
    must="TLS for all API communications (mTLS/encryption between services)",
    guide="Security Considerations > Network Security",
    severity="high",
    levels=levels(dev="mandatory"),
    remediation="protocol 'HTTPS' on the target group, with the per-instance TLS proxy (nginx) on the target "
                "port; health checks may stay HTTP on a separate port.",
    types=(TARGET_GROUP,),
)
def https_target_groups(r, ctx):
    ttype = r.get("targetType")
    if isinstance(ttype, str) and ttype.lower() in ("lambda", "alb"):
        return
    proto = r.get("protocol")
    if opaque(proto):
        yield undetermined("protocol is not known yet")
        return
    if isinstance(proto, str) and proto.upper() == "HTTP":
        yield violation("the target group forwards plain HTTP: prompts cross the VPC unencrypted between the "
                        "load balancer and the servers; use HTTPS to the TLS proxy")
    elif proto is None and str(r.get("protocolVersion", "")).upper() != "GRPC" and ttype != "lambda":
        port = r.get("port")
        if port is not None:
            yield violation("the target group sets no protocol (HTTP is the default): use HTTPS")


@rule(
    name="alb-drop-invalid-headers",
    description="Application load balancers drop HTTP headers with invalid fields (request smuggling "
                "defence) — dropInvalidHeaderFields true.",
    must="Input validation; rate limiting and DDoS protection",
    guide="Security Considerations > Input Validation and Sanitization",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, a hardening setting with no data at stake in dev",
    remediation="Set dropInvalidHeaderFields: true on the aws.lb.LoadBalancer.",
    types=(LB,),
)
def drop_invalid_headers(r, ctx):
    lbt = r.get("loadBalancerType")
    if isinstance(lbt, str) and lbt.lower() != "application":
        return
    if opaque(lbt):
        yield undetermined("loadBalancerType is not known yet")
        return
    v = as_bool(r.get("dropInvalidHeaderFields"))
    if opaque(v):
        yield undetermined("dropInvalidHeaderFields is not known yet")
    elif v is not True:
        yield violation("dropInvalidHeaderFields is not true: headers with invalid fields reach the servers")


RULES = [https_listeners, https_target_groups, drop_invalid_headers]
