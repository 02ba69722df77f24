"""Monitoring: the stack's alarm topic, log groups, per-deployment alarms and one dashboard.

Defaults:
- an SNS topic encrypted with the CMK, publishable only by CloudWatch alarms of this account,
  with an email subscription when `monitoring.alarm_email` is set;
- log groups (CMK, `monitoring.log_retention_days`): the proxies' audit log (one JSON line per
  request, never a prompt), the boot log (secret fetch, model verification), the runtimes'
  Prometheus metrics in embedded metric format;
- per deployment, every alarm wired to the topic on alarm and on recovery:
  GPU memory above `gpu_memory_alarm_percent` (used / total, worst GPU of the group);
  ALB p99 target response time above `latency_p99_seconds`; any unhealthy target;
  target 5xx above 5 % of requests; and, for vLLM/TGI, requests waiting above the number of
  sequences a replica runs at once (`concurrency`) for 10 minutes;
- one CloudWatch dashboard for the stack.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from llm_platform.serving.telemetry import GPU_NAMESPACE, QUEUE_METRIC, RUNTIME_NAMESPACE
from llm_platform.sizing.planner import DeploymentPlan

FIVE_XX_PERCENT = 5.0


LOG_GROUPS = (("audit", "audit"), ("boot", "boot"), ("runtime_metrics", "runtime-metrics"))


def log_group_names(stack: str) -> dict[str, str]:
    """The stack's log groups by purpose (audit, boot, runtime_metrics): fixed names, known before they exist."""
    return {key: f"/llm-platform/{stack}/{purpose}" for key, purpose in LOG_GROUPS}


@dataclass(frozen=True)
class MonitoringArgs:
    stack: str
    kms_key_arn: pulumi.Input[str]           # log groups
    kms_key_id: pulumi.Input[str]            # the SNS topic
    retention_days: int = 90
    alarm_email: str | None = None
    protect: bool = False


class Monitoring(pulumi.ComponentResource):
    """Outputs: topic_arn, log_group_names (audit, boot, runtime_metrics -> name). `dashboard(...)` adds the
    stack's CloudWatch dashboard once the fleets exist and returns its console URL."""

    topic_arn: pulumi.Output[str]
    log_group_names: dict[str, str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:monitoring:Monitoring", name, None, opts)
        stack = args.stack
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        tags = {"llm-platform:stack": stack}
        self._name, self._stack = name, stack
        topic = aws.sns.Topic(f"{name}-alarms", name=f"llm-platform-{stack}-alarms", kms_master_key_id=args.kms_key_id,
                              tags=tags, opts=child)
        aws.sns.TopicPolicy(f"{name}-alarms", arn=topic.arn, policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17", "Statement": [{
                "Sid": "CloudWatchAlarmsOfThisAccount", "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
                "Resource": topic.arn, "Condition": {"StringEquals": {"aws:SourceAccount": account}}}]}),
            opts=child)
        if args.alarm_email:
            aws.sns.TopicSubscription(f"{name}-email", topic=topic.arn, protocol="email", endpoint=args.alarm_email,
                                      opts=child)
        self.log_group_names = log_group_names(stack)
        for key, purpose in LOG_GROUPS:
            aws.cloudwatch.LogGroup(f"{name}-{purpose}", name=self.log_group_names[key],
                                    retention_in_days=args.retention_days, kms_key_id=args.kms_key_arn, tags=tags,
                                    opts=keep)
        self.topic_arn = topic.arn
        self.register_outputs({"topic_arn": self.topic_arn, "log_group_names": self.log_group_names})

    def dashboard(self, panels: Sequence[DashboardPanel], region: pulumi.Input[str]) -> pulumi.Output[str]:
        """The stack's dashboard (one row per deployment); returns its console URL."""
        return _dashboard(self._name, self._stack, panels, region, self)


@dataclass(frozen=True)
class DashboardPanel:
    """One deployment's row on the dashboard."""
    deployment: str
    runtime: str
    asg_name: pulumi.Input[str]
    lb_arn_suffix: pulumi.Input[str]
    tg_arn_suffix: pulumi.Input[str]


@dataclass(frozen=True)
class AlarmArgs:
    """A deployment's CloudWatch alarms on EC2 (made by ModelDeployment, parented to it)."""
    stack: str
    topic_arn: pulumi.Input[str]
    lb_arn_suffix: pulumi.Input[str]
    tg_arn_suffix: pulumi.Input[str]
    latency_p99_seconds: float = 30.0
    gpu_memory_percent: float = 95.0


def deployment_alarms(name: str, plan: DeploymentPlan, args: AlarmArgs, asg_name: pulumi.Input[str],
                      parent: pulumi.Resource) -> list[aws.cloudwatch.MetricAlarm]:
    """GPU memory, p99 latency, unhealthy hosts, 5xx rate and (vLLM/TGI) queue depth, each named `<name>-<role>`."""
    child = pulumi.ResourceOptions(parent=parent)
    actions = dict(alarm_actions=[args.topic_arn], ok_actions=[args.topic_arn])
    prefix = f"llm-{args.stack}-{plan.name}"
    lb = {"LoadBalancer": args.lb_arn_suffix, "TargetGroup": args.tg_arn_suffix}
    latency_p99_seconds, gpu_memory_percent = args.latency_p99_seconds, args.gpu_memory_percent
    alarms = [
        aws.cloudwatch.MetricAlarm(
            f"{name}-gpu-memory", name=f"{prefix}-gpu-memory",
            alarm_description=f"GPU memory of {plan.name} above {gpu_memory_percent:g} %: the KV cache or a leak "
                              "is about to OOM a replica", comparison_operator="GreaterThanThreshold",
            threshold=gpu_memory_percent, evaluation_periods=3, datapoints_to_alarm=3, treat_missing_data="missing",
            metric_queries=[
                {"id": "used", "return_data": False, "metric": {
                    "namespace": GPU_NAMESPACE, "metric_name": "nvidia_smi_memory_used", "period": 60,
                    "stat": "Maximum", "dimensions": {"AutoScalingGroupName": asg_name}}},
                {"id": "total", "return_data": False, "metric": {
                    "namespace": GPU_NAMESPACE, "metric_name": "nvidia_smi_memory_total", "period": 60,
                    "stat": "Maximum", "dimensions": {"AutoScalingGroupName": asg_name}}},
                {"id": "percent", "return_data": True, "label": "GPU memory used %",
                 "expression": "100 * used / total"}],
            **actions, opts=child),
        aws.cloudwatch.MetricAlarm(
            f"{name}-latency-p99", name=f"{prefix}-latency-p99",
            alarm_description=f"p99 time to response headers of {plan.name} above {latency_p99_seconds:g} s",
            namespace="AWS/ApplicationELB", metric_name="TargetResponseTime", extended_statistic="p99",
            dimensions=lb, period=60, evaluation_periods=5, datapoints_to_alarm=3,
            comparison_operator="GreaterThanThreshold", threshold=latency_p99_seconds,
            treat_missing_data="notBreaching", **actions, opts=child),
        aws.cloudwatch.MetricAlarm(
            f"{name}-unhealthy", name=f"{prefix}-unhealthy-hosts",
            alarm_description=f"a {plan.name} instance fails its health check (model verification, runtime, proxy)",
            namespace="AWS/ApplicationELB", metric_name="UnHealthyHostCount", statistic="Maximum",
            dimensions=lb, period=60, evaluation_periods=3, datapoints_to_alarm=2,
            comparison_operator="GreaterThanThreshold", threshold=0, treat_missing_data="breaching",
            **actions, opts=child),
        aws.cloudwatch.MetricAlarm(
            f"{name}-5xx", name=f"{prefix}-5xx-rate",
            alarm_description=f"more than {FIVE_XX_PERCENT:g} % of {plan.name} requests end in a target 5xx",
            comparison_operator="GreaterThanThreshold", threshold=FIVE_XX_PERCENT, evaluation_periods=5,
            datapoints_to_alarm=3, treat_missing_data="notBreaching",
            metric_queries=[
                {"id": "errors", "return_data": False, "metric": {
                    "namespace": "AWS/ApplicationELB", "metric_name": "HTTPCode_Target_5XX_Count", "period": 60,
                    "stat": "Sum", "dimensions": lb}},
                {"id": "requests", "return_data": False, "metric": {
                    "namespace": "AWS/ApplicationELB", "metric_name": "RequestCount", "period": 60,
                    "stat": "Sum", "dimensions": lb}},
                {"id": "rate", "return_data": True, "label": "target 5xx %",
                 "expression": "IF(requests > 0, 100 * errors / requests, 0)"}],
            **actions, opts=child),
    ]
    if plan.runtime in QUEUE_METRIC:
        alarms.append(aws.cloudwatch.MetricAlarm(
            f"{name}-queue", name=f"{prefix}-queue-depth",
            alarm_description=f"more {plan.name} requests wait than one replica runs at once ({plan.concurrency}) "
                              "for 10 minutes: add replicas or raise autoscaling.max",
            namespace=RUNTIME_NAMESPACE, metric_name=QUEUE_METRIC[plan.runtime], statistic="Average",
            dimensions={"deployment": plan.name}, period=60, evaluation_periods=10, datapoints_to_alarm=8,
            comparison_operator="GreaterThanThreshold", threshold=plan.concurrency,
            treat_missing_data="notBreaching", **actions, opts=child))
    return alarms


def _dashboard(name: str, stack: str, panels: Sequence[DashboardPanel], region: pulumi.Input[str],
               parent: pulumi.Resource) -> pulumi.Output[str]:
    def body(args):
        lbs, asgs, tgs, reg = args
        widgets, y = [], 0
        for p in panels:
            p_name = p.deployment
            dims = ["LoadBalancer", lbs[p_name], "TargetGroup", tgs[p_name]]
            widgets += [
                _widget(f"{p_name}: p50 / p99 response time (s)", reg, 0, y, [
                    ["AWS/ApplicationELB", "TargetResponseTime", *dims, {"stat": "p50"}],
                    ["AWS/ApplicationELB", "TargetResponseTime", *dims, {"stat": "p99"}]]),
                _widget(f"{p_name}: requests and 5xx", reg, 8, y, [
                    ["AWS/ApplicationELB", "RequestCount", *dims, {"stat": "Sum"}],
                    ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", *dims, {"stat": "Sum"}]]),
                _widget(f"{p_name}: GPU utilization / memory used (MiB)", reg, 16, y, [
                    [GPU_NAMESPACE, "nvidia_smi_utilization_gpu", "AutoScalingGroupName", asgs[p_name]],
                    [GPU_NAMESPACE, "nvidia_smi_memory_used", "AutoScalingGroupName", asgs[p_name],
                     {"yAxis": "right"}]])]
            if p.runtime in QUEUE_METRIC:
                widgets.append(_widget(f"{p_name}: requests waiting", reg, 0, y + 6, [
                    [RUNTIME_NAMESPACE, QUEUE_METRIC[p.runtime], "deployment", p_name]]))
            y += 12
        return pulumi.Output.json_dumps({"widgets": widgets})

    # once named llm-<stack>-dashboard: the alias keeps it in place
    board = aws.cloudwatch.Dashboard(
        f"{name}-dashboard", dashboard_name=f"llm-platform-{stack}",
        dashboard_body=pulumi.Output.all(pulumi.Output.all(**{p.deployment: p.lb_arn_suffix for p in panels}),
                                         pulumi.Output.all(**{p.deployment: p.asg_name for p in panels}),
                                         pulumi.Output.all(**{p.deployment: p.tg_arn_suffix for p in panels}),
                                         region).apply(body),
        opts=pulumi.ResourceOptions(parent=parent, aliases=[pulumi.Alias(name=f"llm-{stack}-dashboard")]))
    return pulumi.Output.format("https://{0}.console.aws.amazon.com/cloudwatch/home?region={0}#dashboards:name={1}",
                                region, board.dashboard_name)


def _widget(title: str, region: str, x: int, y: int, metrics: list) -> dict:
    return {"type": "metric", "x": x, "y": y, "width": 8, "height": 6,
            "properties": {"title": title, "region": region, "metrics": metrics, "period": 60, "view": "timeSeries"}}
