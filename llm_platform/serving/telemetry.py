"""CloudWatch agent and Prometheus scrape configuration for an inference instance. Pure.

Metrics: NVIDIA GPU utilization and memory (`nvidia_smi_*` in namespace LLMPlatform/GPU, by
Auto Scaling group), and the runtime's Prometheus metrics (queue depth, time to first token,
tokens generated, KV-cache use) as embedded-metric-format metrics in LLMPlatform/Runtime by
deployment. Logs: the proxy's audit log and the boot log (model verification, secret fetch),
to CMK-encrypted log groups. Docs: CloudWatch-Agent-NVIDIA-GPU.html, CloudWatch-Agent-PrometheusEC2.html.

Latency histograms: the agent keeps Prometheus counters, gauges and summaries but drops histograms
(ContainerInsights-Prometheus-metrics-conversion.html), and vLLM's time to first token and end-to-end
latency are histograms. A small bridge on the instance (llm-metrics-bridge, Python standard library
only) scrapes the runtime on each agent scrape, turns the bucket increments since the previous
scrape into p50/p90/p99 and mean gauges (linear interpolation inside a bucket, as Prometheus's
histogram_quantile does), and serves them on 127.0.0.1:BRIDGE_PORT, a second scrape target.
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
             "vllm:generation_tokens_total", "vllm:prompt_tokens_total"],
    "tgi": ["tgi_queue_size", "tgi_batch_current_size"],
}
# histogram -> the gauge prefix the bridge exports (…_p50, _p90, _p99, _mean)
HISTOGRAMS = {
    "vllm": {"vllm:time_to_first_token_seconds": "llm_time_to_first_token_seconds",
             "vllm:e2e_request_latency_seconds": "llm_e2e_request_latency_seconds"},
    "tgi": {"tgi_request_duration": "llm_e2e_request_latency_seconds",
            "tgi_request_queue_duration": "llm_queue_seconds"},
}
QUANTILES = (0.5, 0.9, 0.99)
BRIDGE_PORT = 9101
BRIDGE_SCRIPT = "/usr/local/libexec/llm-metrics-bridge.py"


def bridge_metric_names(runtime: str) -> list[str]:
    return [f"{prefix}_{suffix}" for prefix in HISTOGRAMS.get(runtime, {}).values()
            for suffix in [*(f"p{round(q * 100)}" for q in QUANTILES), "mean"]]


# Runs on the instance (python3 of Amazon Linux 2023): stdlib only, no state on disk.
BRIDGE_SOURCE = r'''#!/usr/bin/python3
"""llm-metrics-bridge: runtime latency histograms -> windowed quantile gauges for the CloudWatch agent."""
import json
import math
import re
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM, LISTEN_PORT, HISTOGRAMS, QUANTILES = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), (0.5, 0.9, 0.99)
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LE = re.compile(r'(?:^|,)\s*le="([^"]+)"')
previous = {}
lock = threading.Lock()


def parse(text):
    """{histogram: {"buckets": {le: count summed over other labels}, "sum": s, "count": n}}"""
    out = {h: {"buckets": {}, "sum": 0.0, "count": 0.0} for h in HISTOGRAMS}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        for h in HISTOGRAMS:
            if name == h + "_bucket":
                le = LE.search(labels)
                if le:
                    bound = math.inf if le.group(1) == "+Inf" else float(le.group(1))
                    out[h]["buckets"][bound] = out[h]["buckets"].get(bound, 0.0) + value
            elif name == h + "_sum":
                out[h]["sum"] += value
            elif name == h + "_count":
                out[h]["count"] += value
    return out


def quantile(q, buckets):
    """histogram_quantile over cumulative (upper bound, count) pairs; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank, lower, below = q * buckets[bounds[-1]], 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if math.isinf(b):
                return lower            # above the highest finite bound: report that bound
            width = buckets[b] - below
            return lower + (b - lower) * ((rank - below) / width if width > 0 else 1.0)
        lower, below = b, buckets[b]
    return lower


def window(now, before):
    """Increments since the previous scrape; a restarted runtime (counters went down) starts afresh."""
    if before is None or now["count"] < before["count"]:
        return now
    return {"buckets": {b: c - before["buckets"].get(b, 0.0) for b, c in now["buckets"].items()},
            "sum": now["sum"] - before["sum"], "count": now["count"] - before["count"]}


def gauges(text):
    global previous
    current = parse(text)
    lines = []
    with lock:
        for h, prefix in sorted(HISTOGRAMS.items()):
            w = window(current[h], previous.get(h))
            if w["count"] <= 0:
                continue            # no requests in the window: no data point rather than a false zero
            lines.append(f"# TYPE {prefix}_mean gauge")
            lines.append(f"{prefix}_mean {w['sum'] / w['count']:.6f}")
            for q in QUANTILES:
                v = quantile(q, w["buckets"])
                if v is not None:
                    lines.append(f"# TYPE {prefix}_p{round(q * 100)} gauge")
                    lines.append(f"{prefix}_p{round(q * 100)} {v:.6f}")
        previous = current
    return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        try:
            with urllib.request.urlopen(UPSTREAM, timeout=5) as r:
                body = gauges(r.read().decode()).encode()
        except OSError:
            self.send_error(502)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", LISTEN_PORT), Handler).serve_forever()
'''


def bridge_command(plan: DeploymentPlan) -> list[str]:
    """argv of the bridge for a plan (empty when the runtime has no histograms to convert)."""
    spec = container_spec(plan, max_tokens=0)
    if plan.runtime not in HISTOGRAMS or not spec.metrics_path:
        return []
    return ["/usr/bin/python3", BRIDGE_SCRIPT, f"http://127.0.0.1:{PORTS[plan.runtime]}{spec.metrics_path}",
            str(BRIDGE_PORT), json.dumps(HISTOGRAMS[plan.runtime], separators=(",", ":"), sort_keys=True)]


def prometheus_config(plan: DeploymentPlan) -> str:
    spec = container_spec(plan, max_tokens=0)
    if not spec.metrics_path:
        return ""
    text = (f"global:\n  scrape_interval: 30s\n  scrape_timeout: 10s\nscrape_configs:\n"
            f"  - job_name: llm-runtime\n    metrics_path: {spec.metrics_path}\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{PORTS[plan.runtime]}']\n        labels:\n"
            f"          deployment: {plan.name}\n")
    if plan.runtime in HISTOGRAMS:
        text += (f"  - job_name: llm-runtime-histograms\n    metrics_path: /metrics\n    static_configs:\n"
                 f"      - targets: ['127.0.0.1:{BRIDGE_PORT}']\n        labels:\n"
                 f"          deployment: {plan.name}\n")
    return text


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
                "source_labels": ["job"], "label_matcher": "^llm-runtime(-histograms)?$",
                "dimensions": [["deployment"]],
                "metric_selectors": [f"^{m}$" for m in
                                     RUNTIME_METRICS[plan.runtime] + bridge_metric_names(plan.runtime)]
            }]}}}
    return json.dumps(config, indent=1, sort_keys=True)
