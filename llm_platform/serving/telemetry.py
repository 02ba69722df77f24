"""CloudWatch agent and Prometheus scrape configuration for an inference instance. Pure.

Metrics: NVIDIA GPU utilization and memory (`nvidia_smi_*` in namespace LLMPlatform/GPU, by
Auto Scaling group), and the runtime's Prometheus metrics (queue depth, time to first token,
tokens generated, KV-cache use) as embedded-metric-format metrics in LLMPlatform/Runtime by
deployment. Logs: the proxy's audit log and the boot log (model verification, secret fetch),
to CMK-encrypted log groups. Docs: CloudWatch-Agent-NVIDIA-GPU.html, CloudWatch-Agent-PrometheusEC2.html.
"""
from __future__ import annotations

import json
from typing import Any

from llm_platform.sizing.planner import DeploymentPlan
from .proxy import AUDIT_LOG
from .runtime import PORTS, container_spec

GPU_NAMESPACE = "LLMPlatform/GPU"
RUNTIME_NAMESPACE = "LLMPlatform/Runtime"
QUEUE_METRIC = {"vllm": "vllm:num_requests_waiting", "tgi": "tgi_queue_size"}
RUNTIME_METRICS = {
    "vllm": ["vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
             "vllm:time_to_first_token_seconds_sum", "vllm:time_to_first_token_seconds_count",
             "vllm:generation_tokens_total", "vllm:prompt_tokens_total"],
    "tgi": ["tgi_queue_size", "tgi_batch_current_size", "tgi_request_generated_tokens_sum",
            "tgi_request_queue_duration_sum", "tgi_request_queue_duration_count"],
}


def prometheus_config(plan: DeploymentPlan) -> str:
    spec = container_spec(plan, max_tokens=0)
    if not spec.metrics_path:
        return ""
    return (f"global:\n  scrape_interval: 30s\n  scrape_timeout: 10s\nscrape_configs:\n"
            f"  - job_name: llm-runtime\n    metrics_path: {spec.metrics_path}\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{PORTS[plan.runtime]}']\n        labels:\n"
            f"          deployment: {plan.name}\n")


def cwagent_config(plan: DeploymentPlan, *, audit_log_group: str, boot_log_group: str, metrics_log_group: str) -> str:
    config: dict[str, Any] = {
        "agent": {"metrics_collection_interval": 60, "run_as_user": "root"},
        "metrics": {
            "namespace": GPU_NAMESPACE,
            "append_dimensions": {"AutoScalingGroupName": "${aws:AutoScalingGroupName}",
                                  "InstanceId": "${aws:InstanceId}"},
            "aggregation_dimensions": [["AutoScalingGroupName"]],
            "metrics_collected": {"nvidia_gpu": {
                "measurement": ["utilization_gpu", "utilization_memory", "memory_used", "memory_total",
                                "temperature_gpu", "power_draw"],
                "metrics_collection_interval": 60}},
        },
        "logs": {"logs_collected": {"files": {"collect_list": [
            # retention and encryption are set on the log groups themselves (Monitoring), not by the agent
            {"file_path": AUDIT_LOG, "log_group_name": audit_log_group, "log_stream_name": "{instance_id}",
             "timezone": "UTC"},
            {"file_path": "/var/log/llm/boot.log", "log_group_name": boot_log_group, "log_stream_name": "{instance_id}",
             "timezone": "UTC"},
        ]}}},
    }
    if plan.runtime in RUNTIME_METRICS:
        config["logs"]["metrics_collected"] = {"prometheus": {
            "log_group_name": metrics_log_group,
            "prometheus_config_path": "/opt/aws/amazon-cloudwatch-agent/etc/prometheus.yaml",
            "emf_processor": {"metric_namespace": RUNTIME_NAMESPACE, "metric_declaration": [{
                "source_labels": ["job"], "label_matcher": "^llm-runtime$", "dimensions": [["deployment"]],
                "metric_selectors": [f"^{m}$" for m in RUNTIME_METRICS[plan.runtime]]}]}}}
    return json.dumps(config, indent=1, sort_keys=True)
