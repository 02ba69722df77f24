"""Monitoring: alarms wired to a topic for every inference group; the alarm topic encrypted."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core import (
    UNKNOWN,
    Context,
    Finding,
    Resource,
    Stack,
    Tristate,
    as_bool,
    as_list,
    get,
    levels,
    opaque,
    rule,
    undetermined,
    violation,
)
from ..topology import ASG, ECS_SERVICE, INSTANCE, LB, topology
from ..workloads import SAGEMAKER_MODEL

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"


def _dimension_values(alarm: Resource) -> list[Any]:
    vals: list[Any] = []
    dims = alarm.get("dimensions")
    if isinstance(dims, dict):
        vals += list(dims.values())
    elif opaque(dims):
        vals.append(dims)
    for q in as_list(alarm.get("metricQueries")):
        d = get(q, "metric.dimensions")
        if isinstance(d, dict):
            vals += list(d.values())
    return vals


def _wired(stack: Stack, alarm: Resource, topics: list[Resource]) -> Tristate:
    """True / False / UNKNOWN: the alarm notifies an SNS topic when it fires."""
    if as_bool(alarm.get("actionsEnabled")) is False:
        return False
    actions = alarm.get("alarmActions")
    if opaque(actions):
        return UNKNOWN
    unknown = False
    for a in as_list(actions):
        if isinstance(a, str) and a.startswith("arn:") and ":sns:" in a:
            return True
        if stack.referenced(alarm, "alarmActions", a, topics):
            return True
        if opaque(a):
            unknown = True
    return UNKNOWN if unknown else False


@rule(
    name="inference-alarms",
    description="Every inference group (Auto Scaling group, instance, ECS service or SageMaker model that serves "
                "a model or runs on GPUs) is watched by at least one CloudWatch alarm (on its own dimensions, its "
                "target group, its load balancer or its endpoint) whose alarmActions notify an SNS topic.",
    must="MUST implement comprehensive monitoring for production deployments (GPU memory > 95 %, p99 > 5 s)",
    guide="Monitoring and Observability; Do and Don't Examples (DO: monitor and alert)",
    severity="high",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, nobody is paged for a dev box",
    remediation="Add aws.cloudwatch.MetricAlarm for GPU memory (> 95 %), p99 latency (> 5 s), unhealthy hosts and "
                "5xx with dimensions AutoScalingGroupName / TargetGroup, and alarm_actions=[topic.arn].",
    kind="stack",
)
def inference_alarms(stack: Stack, ctx: Context) -> Iterator[Finding]:
    topo = topology(stack)
    alarms = stack.of_type(ALARM)
    topics = stack.of_type(TOPIC)
    lbs = stack.of_type(LB)
    global_alarms = [a for a in alarms if not _dimension_values(a)]
    for g in topo.inference_groups():
        if g.resource.type not in (ASG, INSTANCE, ECS_SERVICE, SAGEMAKER_MODEL):
            continue
        if g.resource.type == SAGEMAKER_MODEL:
            configs = [c for c, _ in topo.sagemaker_variants(g.resource)]
            watched = [g.resource] + configs + [e for c in configs for e in topo.sagemaker_endpoints(c)]
        else:
            tgs = topo.target_groups_of(g)
            fronting = [lb for lb in lbs
                        if any(t.key in {x.key for x in (topo.target_groups_of_lb(lb) or [])} for t in tgs)]
            watched = [g.resource] + tgs + fronting
        mine, maybe = [], False
        for a in alarms:
            vals = _dimension_values(a)
            if any(stack.referenced(a, "dimensions", v, watched) for v in vals):
                mine.append(a)
            elif any(opaque(v) for v in vals):
                maybe = True
        mine += [a for a in global_alarms if a not in mine]
        wired = [_wired(stack, a, topics) for a in mine]
        if True in wired:
            continue
        if UNKNOWN in wired or (maybe and not mine):
            yield undetermined("the alarms' dimensions or actions are not known yet", g.resource)
        elif not mine:
            yield violation("no CloudWatch alarm watches this inference group (GPU memory, latency, unhealthy hosts, "
                            "5xx): failures go unnoticed", g.resource)
        else:
            yield violation(f"{len(mine)} alarm(s) watch this inference group but none notifies an SNS topic "
                            "(alarmActions)", g.resource)


@rule(
    name="sns-topic-encrypted",
    description="SNS topics (alarm notifications) are encrypted at rest with a KMS key (kmsMasterKeyId).",
    must="Encryption at rest",
    guide="Security Considerations > Data Privacy and Compliance",
    severity="low",
    levels=levels(dev="advisory", prod="advisory"),
    rationale="advisory in every environment: alarm messages carry metric names and thresholds, not prompts",
    remediation="Pass kmsMasterKeyId=key.arn (the key policy must let cloudwatch.amazonaws.com use it).",
    types=(TOPIC,),
)
def sns_encrypted(r: Resource, ctx: Context) -> Iterator[Finding]:
    k = r.get("kmsMasterKeyId")
    if k is UNKNOWN:
        return
    if not k:
        yield violation("kmsMasterKeyId is not set: notifications are stored unencrypted")


RULES = [inference_alarms, sns_encrypted]
