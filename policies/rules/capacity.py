"""GPU capacity: an autoscaled prod GPU group must be able to launch on more than one instance type."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core import (
    Context,
    Finding,
    Resource,
    Stack,
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
from ..topology import ASG, Group, topology

REASON_TAG = "llm-platform:capacity-single-type"              # ASG / launch template tag: why one type only
REASON_ANNOTATION = "llm-platform.io/capacity-single-type"    # Kubernetes workload annotation: the same
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
SCALERS = ("ScaledObject", "HorizontalPodAutoscaler")
POD_SPECS = ("spec.template.spec", "spec.leaderWorkerTemplate.workerTemplate.spec",
             "spec.leaderWorkerTemplate.leaderTemplate.spec")


def _asg_types(g: Group) -> list[Any]:
    types: list[Any] = []
    for t in g.instance_types:
        if t not in types:
            types.append(t)
    return types


def _pod_spec(r: Resource) -> dict[str, Any] | None:
    for path in POD_SPECS:
        spec = r.get(path)
        if isinstance(spec, dict):
            return spec
    return None


def _pod_types(stack: Stack, spec: dict[str, Any]) -> list[Any] | None:
    """Instance types a pod may land on: its instance-type selector or required affinity, else the types of the
    Karpenter NodePools whose node labels its selector matches; None: not constrained (any node)."""
    selector = spec.get("nodeSelector") or {}
    if opaque(selector):
        return [selector]
    if INSTANCE_TYPE_LABEL in selector:
        return [selector[INSTANCE_TYPE_LABEL]]
    terms = get(spec, "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms")
    for term in as_list(terms):
        for ex in as_list(get(term, "matchExpressions")):
            if get(ex, "key") == INSTANCE_TYPE_LABEL and get(ex, "operator") == "In":
                return as_list(get(ex, "values"))
    pools = [p for p in stack.resources if k8s_kind(p.type) == "NodePool"]
    types: list[Any] = []
    matched = False
    for p in pools:
        labels = p.get("spec.template.metadata.labels") or {}
        if selector and all(labels.get(k) == v for k, v in selector.items() if k != "llm-platform/node-pool"):
            matched = True
            for req in as_list(p.get("spec.template.spec.requirements")):
                if get(req, "key") == INSTANCE_TYPE_LABEL and get(req, "operator") == "In":
                    types += [t for t in as_list(get(req, "values")) if t not in types]
    return types if matched else None


def _autoscaled_k8s(stack: Stack, r: Resource) -> bool:
    name = r.get("metadata.name")
    for s in stack.resources:
        if k8s_kind(s.type) in SCALERS and s.get("spec.scaleTargetRef.name") == name:
            return True
    return False


@rule(
    name="prod-gpu-capacity-fallback",
    description="In prod an autoscaled GPU group can launch on more than one instance type (EC2 mixed instances "
                "policy overrides; Kubernetes node selection or Karpenter NodePool instance types), or says why not "
                f"in a `{REASON_TAG}` tag / `{REASON_ANNOTATION}` annotation.",
    must="Scale with demand: GPU capacity for one instance type is often unavailable in an AZ; a scale-out that "
         "can use only that type fails exactly when the load needs it",
    guide="Scaling (autoscaling GPU instances); When to Use Self-Hosted (Uptime Requirements)",
    severity="medium",
    levels=levels(dev="disabled", staging="advisory"),
    rationale="dev: single-type groups are the cheap default and nothing depends on their scale-out",
    remediation="list checked fallback types (plan.py shows them) as mixed instances policy overrides with "
                "weighted capacity, or as the NodePool's instance types; or tag the group with the reason "
                f"({REASON_TAG}: capacity block / forced type / ...).",
    kind="stack",
)
def prod_gpu_capacity_fallback(stack: Stack, ctx: Context) -> Iterator[Finding]:
    topo = topology(stack)
    for g in topo.inference_groups():
        r = g.resource
        if r.type == ASG:
            mn, mx = as_num(r.get("minSize")), as_num(r.get("maxSize"))
            if opaque(mn) or opaque(mx):
                yield undetermined("minSize/maxSize are not known yet", r)
                continue
            if mn is None or mx is None or mx <= mn:
                continue                      # not autoscaled: a fixed group does not chase capacity
            types = _asg_types(g)
            if any(opaque(t) for t in types):
                yield undetermined("the group's instance types are not known yet", r)
                continue
            if len(types) >= 2:
                continue
            reason = g.tags.get(REASON_TAG)
            if opaque(reason):
                yield undetermined(f"the {REASON_TAG} tag is not known yet", r)
            elif not reason:
                yield violation(f"the group scales from {mn:g} to {mx:g} on {types[0] if types else 'one type'} only: "
                                f"add fallback types (mixedInstancesPolicy overrides) or tag {REASON_TAG} with why not",
                                r)
        elif k8s_kind(r.type) and _autoscaled_k8s(stack, r):
            spec = _pod_spec(r)
            if spec is None:
                yield undetermined("the pod template is not known yet", r)
                continue
            pod_types = _pod_types(stack, spec)
            if pod_types is None or len(pod_types) >= 2:
                continue
            if any(opaque(t) for t in pod_types):
                yield undetermined("the pod's node selection is not known yet", r)
                continue
            reason = (r.get("metadata.annotations") or {}).get(REASON_ANNOTATION)
            if not reason:
                yield violation(f"{k8s_kind(r.type)} {r.get('metadata.name')} autoscales but its pods fit only "
                                f"{pod_types[0] if pod_types else 'no'} nodes: let them select more instance types (a "
                                f"Karpenter NodePool with fallbacks) or annotate {REASON_ANNOTATION} with why not", r)


RULES = [prod_gpu_capacity_fallback]
