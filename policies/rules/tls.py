"""TLS for all API traffic: HTTPS/TLS listeners with an exact policy allow-list, no plain HTTP to
targets, invalid headers dropped."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..core import (
    JSON,
    Context,
    Finding,
    Resource,
    as_bool,
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
from ..workloads import DEFAULT_PORTS, WORKLOAD_TYPES, is_loopback, workload

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


def _redirects_to_https(actions: Any) -> bool:
    acts = [a for a in as_list(actions) if isinstance(a, dict)]
    return bool(acts) and all(str(get(a, "type", "")).lower() == "redirect" and
                              str(get(a, "redirect.protocol", "")).upper() == "HTTPS" for a in acts)


@rule(
    name="https-listeners",
    description="Load-balancer listeners speak HTTPS (ALB) or TLS (NLB) with an SSL policy from the allow-list "
                "(TLS 1.2/1.3 only); a plain HTTP listener may only redirect to HTTPS. Kubernetes ingresses "
                "terminate TLS (spec.tls, or an ALB certificate with the alb.ingress.kubernetes.io/ssl-policy "
                "annotation from the allow-list and HTTP redirected); Services of type LoadBalancer terminate TLS "
                "(aws-load-balancer-ssl-cert). Classic ELB listeners use HTTPS/SSL.",
    must="TLS for all API communications",
    guide="Security Considerations > Network Security; Do and Don't Examples (ssl_protocols TLSv1.2 TLSv1.3)",
    severity="high",
    levels=levels(dev="mandatory"),
    remediation="protocol 'HTTPS', sslPolicy 'ELBSecurityPolicy-TLS13-1-2-2021-06' (or stricter, see "
                "allowedSslPolicies), certificateArn from ACM; turn port-80 listeners into redirects to HTTPS.",
    types=(LISTENER, ELB, "k8s:Ingress", "k8s:Service"),
    config={"allowedSslPolicies": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_SSL_POLICIES,
                                   "description": "exact ELB security policy names a listener may use"}},
)
def https_listeners(r: Resource, ctx: Context) -> Iterator[Finding]:
    allowed = ctx.config.get("allowedSslPolicies") or DEFAULT_SSL_POLICIES
    if k8s_kind(r.type) == "Ingress":
        yield from _ingress_tls(r, allowed)
        return
    if k8s_kind(r.type) == "Service":
        yield from _service_tls(r)
        return
    if r.type == ELB:
        for i, listener in enumerate(as_list(r.get("listeners"))):
            proto = str(get(listener, "lbProtocol", "")).upper()
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


ALB_PREFIX = "alb.ingress.kubernetes.io/"
NLB_CERT = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"


def _is_alb_ingress(r: Resource, ann: dict[str, Any]) -> bool:
    cls = r.get("spec.ingressClassName") or ann.get("kubernetes.io/ingress.class")
    return (isinstance(cls, str) and cls.lower() == "alb") or any(k.startswith(ALB_PREFIX) for k in ann)


def _ingress_tls(r: Resource, allowed: list[str]) -> Iterator[Finding]:
    ann = r.get("metadata.annotations") or {}
    tls = r.get("spec.tls")
    if opaque(tls) or opaque(ann) or not isinstance(ann, dict) or any(opaque(v) for v in ann.values()):
        yield undetermined("spec.tls or the ingress annotations are not known yet")
        return
    if not _is_alb_ingress(r, ann):
        if not as_list(tls):
            yield violation("the ingress has no spec.tls: the API is served over plain HTTP")
        return
    # AWS Load Balancer Controller: HTTPS needs a certificate (annotation, or discovery from spec.tls hosts);
    # listen-ports default to HTTPS:443 then, HTTP:80 otherwise
    cert = ann.get(ALB_PREFIX + "certificate-arn") or as_list(tls)
    ports = ann.get(ALB_PREFIX + "listen-ports")
    listen = [str(k).upper() for p in (as_json(ports) or []) if isinstance(p, dict) for k in p] if ports else \
        (["HTTPS"] if cert else ["HTTP"])
    if not cert or "HTTPS" not in listen:
        yield violation("the ALB ingress has no HTTPS listener (no certificate-arn, no spec.tls hosts, or listen-ports "
                        "without HTTPS): the API is served over plain HTTP")
        return
    policy = ann.get(ALB_PREFIX + "ssl-policy")
    if policy is None:
        yield violation("the ALB ingress sets no alb.ingress.kubernetes.io/ssl-policy: the controller then applies "
                        "ELBSecurityPolicy-2016-08, which still accepts TLS 1.0 and 1.1")
    elif policy not in allowed:
        yield violation(f"alb.ingress.kubernetes.io/ssl-policy {policy!r} is not in the allow-list (TLS 1.2/1.3 only)")
    if "HTTP" in listen and not ann.get(ALB_PREFIX + "ssl-redirect"):
        yield violation("the ALB ingress also listens on plain HTTP without alb.ingress.kubernetes.io/ssl-redirect")


def _service_tls(r: Resource) -> Iterator[Finding]:
    if r.get("spec.type") != "LoadBalancer":
        return
    ann = r.get("metadata.annotations") or {}
    if opaque(ann) or not isinstance(ann, dict):
        yield undetermined("metadata.annotations is not known yet")
        return
    if opaque(ann.get(NLB_CERT)):
        yield undetermined(f"{NLB_CERT} is not known yet")
    elif not ann.get(NLB_CERT) and not _tls_passthrough(r.get("spec.ports")):
        yield violation("the Service of type LoadBalancer terminates no TLS (no service.beta.kubernetes.io/"
                        "aws-load-balancer-ssl-cert): prompts and keys cross the network in clear text")


def _tls_passthrough(ports: Any) -> bool:
    """Every port forwards to a TLS port (443 / 8443, or named https / tls): TCP passthrough to a proxy in the
    pod that terminates TLS itself (the load balancer never sees plaintext)."""
    ports = [p for p in as_list(ports) if isinstance(p, dict)]

    def tls(p: JSON) -> bool:
        target = p.get("targetPort", p.get("port"))
        if isinstance(target, str) and not target.isdigit():
            return bool(re.search(r"https|tls|ssl", target, re.I))
        n = as_num(target)
        return isinstance(n, float) and int(n) in (443, 8443) or bool(re.search(r"https|tls", str(p.get("name", ""))))
    return bool(ports) and all(tls(p) for p in ports)


MESH_INJECT = {"sidecar.istio.io/inject": ("true",), "linkerd.io/inject": ("enabled",),
               "istio.io/dataplane-mode": ("ambient",)}


def _meshed(r: Resource) -> bool:
    """Pods that join an mTLS service mesh (Istio sidecar or ambient, Linkerd), by their template's labels and
    annotations."""
    tags = r.tags()
    return any(str(tags.get(k, "")).lower() in ok for k, ok in MESH_INJECT.items())


_URL = re.compile(r"\bhttp://(?P<host>\[[^\]]+\]|[^/:\s\"']+)(:(?P<port>\d+))?", re.I)
_MODEL_WORDS = re.compile(r"ollama|vllm|tgi|text-generation|llama|llm|inference|model|openai|completion|chat", re.I)


@rule(
    name="no-plaintext-model-urls",
    description="No workload reaches a model server over plain http:// beyond its own host or pod: environment "
                "variables such as OLLAMA_BASE_URL / OPENAI_API_BASE pointing at a model (by name, or at a model "
                "server port) use https:// (or a same-pod loopback sidecar); pods in an mTLS mesh (Istio, Linkerd "
                "injection labels) are exempt.",
    must="TLS for all API communications (mTLS/encryption between services)",
    guide="Security Considerations > Network Security",
    severity="high",
    levels=levels(dev="mandatory"),
    remediation="Point clients at the TLS endpoint (https://, the load balancer's or the proxy's port), or run the "
                "client in the model's pod and call 127.0.0.1; in Kubernetes a service mesh with mTLS also does.",
    types=WORKLOAD_TYPES + ("k8s:Deployment", "k8s:StatefulSet", "k8s:DaemonSet", "k8s:ReplicaSet", "k8s:Job",
                            "k8s:CronJob", "k8s:Pod", "k8s:ReplicationController"),
)
def no_plaintext_model_urls(r: Resource, ctx: Context) -> Iterator[Finding]:
    w = workload(r)
    if w is None:
        return
    if w.opaque:
        yield undetermined("the workload is not known yet")
        return
    if _meshed(r):
        return          # the mesh's sidecars carry pod-to-pod traffic over mTLS whatever the URL scheme says
    seen = set()
    for where, name, value in w.env_values:
        if opaque(value):
            if isinstance(name, str) and _MODEL_WORDS.search(name) and re.search(r"URL|HOST|BASE|ENDPOINT", name, re.I):
                yield undetermined(f"{where}: {name} is not known yet")
            continue
        if not isinstance(value, str):
            continue
        for m in _URL.finditer(value):
            host, port = m.group("host"), m.group("port")
            if is_loopback(host.strip("[]")) or host.startswith("169.254."):
                continue
            model_port = port is not None and int(port) in DEFAULT_PORTS.values() and int(port) != 8080
            if not (model_port or _MODEL_WORDS.search(host) or _MODEL_WORDS.search(str(name))):
                continue
            key = (where, name)
            if key not in seen:
                seen.add(key)
                yield violation(f"{where}: {name}={m.group(0)} calls a model server over plain HTTP: prompts and "
                                "completions cross the network unencrypted")


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
def https_target_groups(r: Resource, ctx: Context) -> Iterator[Finding]:
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
def drop_invalid_headers(r: Resource, ctx: Context) -> Iterator[Finding]:
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


RULES = [https_listeners, https_target_groups, drop_invalid_headers, no_plaintext_model_urls]
