"""Production availability and state: replicas over two or more AZs, stateful resources protected."""
from __future__ import annotations

from collections.abc import Iterator

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
from ..topology import ASG, ECS_SERVICE, INSTANCE, Group, Topology, topology
from ..workloads import SAGEMAKER_MODEL
from .models import identity


def _azs(stack: Stack, topo: Topology, g: Group, prop: str) -> set[str] | None:
    """Distinct AZs of the group's subnets (None if some subnet's AZ cannot be resolved)."""
    zones: set[str] = set()
    for ref in g.subnets:
        hit = topo.subnet(ref, g.resource, prop)
        if not hit:
            return None
        for sn in hit:
            az = sn.get("availabilityZone") or sn.get("availabilityZoneId")
            if not isinstance(az, str):
                return None
            zones.add(az)
    return zones


@rule(
    name="prod-multi-az",
    description="In prod every inference group keeps at least 2 replicas spread over at least 2 availability "
                "zones (ASG minSize and subnets/AZs, ECS desiredCount and subnets, Kubernetes replicas, standalone "
                "instances per model, SageMaker production variants' initialInstanceCount).",
    must="High availability: teams manage HA/DR themselves (deploy multiple instances behind a load balancer)",
    guide="When to Use Self-Hosted (Uptime Requirements); vLLM: Production Deployment (Load Balancing Multiple "
          "vLLM Instances)",
    severity="medium",
    levels=levels(dev="disabled", staging="advisory"),
    rationale="dev: not applied, one replica is the dev setup",
    remediation="replicas >= 2 (autoscaling min >= 2) and availability_zones >= 2; the ASG's vpcZoneIdentifiers "
                "list one private subnet per AZ.",
    kind="stack",
)
def prod_multi_az(stack: Stack, ctx: Context) -> Iterator[Finding]:
    topo = topology(stack)
    singles: dict[str, list[Group]] = {}
    for g in topo.inference_groups():
        r = g.resource
        if r.type == ASG:
            mn = as_num(r.get("minSize"))
            if opaque(mn):
                yield undetermined("minSize is not known yet", r)
            elif mn is None or mn < 2:
                yield violation(f"minSize is {mn:g}: a single replica serves the model" if mn is not None else
                                "minSize is not set: a single replica may serve the model", r)
            subnets = [s for s in g.subnets]
            azs = as_list(r.get("availabilityZones"))
            if any(opaque(s) for s in subnets) or any(opaque(a) for a in azs):
                yield undetermined("the group's subnets are not known yet", r)
                continue
            zones = _azs(stack, topo, g, "vpcZoneIdentifiers") if subnets else set(azs)
            count = len(zones) if zones is not None else len(set(subnets))
            if count < 2:
                yield violation(f"the group spans {count} availability zone(s): one AZ outage takes the model down", r)
        elif r.type == ECS_SERVICE:
            n = as_num(r.get("desiredCount"))
            if isinstance(n, float) and n < 2:
                yield violation(f"desiredCount is {n:g}: a single task serves the model", r)
            if len(set(str(s) for s in g.subnets)) < 2 and not any(opaque(s) for s in g.subnets):
                yield violation("the service's tasks run in fewer than 2 subnets (AZs)", r)
        elif r.type == INSTANCE:
            p = g.workload.processes[0] if g.workload and g.workload.processes else None
            key = identity(p, g.tags) if p else None
            singles.setdefault(str(key), []).append(g)
        elif k8s_kind(r.type) in ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"):
            n = as_num(r.get("spec.replicas"))
            if opaque(n):
                yield undetermined("spec.replicas is not known yet", r)
            elif n is None or n < 2:
                yield violation(f"{k8s_kind(r.type)} runs {int(n) if n is not None else 1} replica(s)", r)
        elif k8s_kind(r.type) == "Pod":
            yield violation("a bare Pod serves the model: use a Deployment with >= 2 replicas", r)
        elif r.type == SAGEMAKER_MODEL:
            for cfg, v in topo.sagemaker_variants(r):
                if get(v, "serverlessConfig") is not None:
                    continue
                n = as_num(get(v, "initialInstanceCount"))
                if opaque(n):
                    yield undetermined("initialInstanceCount is not known yet", cfg)
                elif n is None or n < 2:
                    yield violation(f"production variant {get(v, 'variantName') or get(v, 'modelName') or ''} runs "
                                    f"{int(n) if n is not None else 1} instance: SageMaker spreads instances over "
                                    "availability zones only when there are at least 2", cfg)
    for gs in singles.values():
        if len(gs) < 2:
            yield violation("a single standalone instance serves this model: use an Auto Scaling group over >= 2 AZs",
                            gs[0].resource)
        elif len(subnets) < 2:
            yield violation(f"{len(gs)} instances serve this model from one subnet (AZ)", gs[0].resource)


STATEFUL = ("aws:kms/key:Key", "aws:s3/bucket:Bucket", "aws:secretsmanager/secret:Secret",
            "aws:cloudwatch/logGroup:LogGroup", "aws:efs/fileSystem:FileSystem", "aws:rds/instance:Instance",
            "aws:rds/cluster:Cluster", "aws:dynamodb/table:Table", "aws:ecr/repository:Repository")


@rule(
    name="stateful-resources-protected",
    description="In prod, resources that hold state (KMS keys, the model bucket, secrets, log groups, "
                "repositories, databases) are protected against deletion (protect or retainOnDelete).",
    must="Operational safety: a `pulumi destroy` or a rename must not delete keys, weights or audit logs",
    guide="Security Considerations > Data Privacy and Compliance (audit logs, data retention)",
    severity="low",
    levels=levels(dev="disabled", staging="advisory", prod="advisory"),
    rationale="advisory in prod: plan.py's recording cannot see resource options, and protection is an "
              "operational guard; dev: not applied",
    remediation="opts=pulumi.ResourceOptions(protect=True) (or retain_on_delete=True) on stateful resources in prod.",
    types=STATEFUL,
)
def stateful_protected(r: Resource, ctx: Context) -> Iterator[Finding]:
    if r.protect is None:
        return
    if r.protect is False:
        yield violation("the resource holds state but is not protected: a destroy or rename deletes it")


RULES = [prod_multi_az, stateful_protected]
