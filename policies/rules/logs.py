"""No PII or prompt logging, and logs that expire and are encrypted."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..core import UNKNOWN, Context, Finding, Resource, as_num, levels, opaque, rule, undetermined, violation
from ..workloads import WORKLOAD_TYPES, as_bool_text, workload

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
VALID_RETENTION = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                   3288, 3653)
# nginx log formats that write request bodies (prompts) or credentials to the access log
_LOG_FORMAT = re.compile(r"log_format[^;]*?(\$request_body|\$http_authorization|\$http_x_api_key|\$arg_api_key)",
                         re.S | re.I)


@rule(
    name="log-group-retention",
    description="CloudWatch log groups expire their events (retentionInDays set, not 0 = never); with "
                "maxRetentionDays configured, no longer than that.",
    must="MUST implement data retention policies (retention_days: 90)",
    guide="Security Considerations > Data Privacy and Compliance",
    severity="medium",
    levels=levels(dev="mandatory"),
    remediation="Set retentionInDays (the guide's 90, or monitoring.log_retention_days).",
    types=(LOG_GROUP,),
    config={"maxRetentionDays": {"type": "number", "description": "longest retention allowed, in days"}},
)
def log_retention(r: Resource, ctx: Context) -> Iterator[Finding]:
    v = as_num(r.get("retentionInDays"))
    if opaque(v):
        yield undetermined("retentionInDays is not known yet")
    elif v is None or v <= 0:
        yield violation("retentionInDays is not set: the log group keeps events forever")
    else:
        mx = ctx.config.get("maxRetentionDays")
        if mx is not None and v > float(mx):
            yield violation(f"retentionInDays {v:.0f} exceeds maxRetentionDays {mx}")


@rule(
    name="log-group-kms",
    description="CloudWatch log groups are encrypted with a customer-managed KMS key (kmsKeyId).",
    must="Encryption at rest (logs: encryption AES-256)",
    guide="Security Considerations > Data Privacy and Compliance (logging_configuration.encryption)",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, CloudWatch encrypts with its own key anyway; the CMK controls who reads",
    remediation="Pass kmsKeyId=key.arn; the key policy must allow logs.<region>.amazonaws.com to use it.",
    types=(LOG_GROUP,),
)
def log_kms(r: Resource, ctx: Context) -> Iterator[Finding]:
    k = r.get("kmsKeyId")
    if k is UNKNOWN:
        return          # the ARN of a key created in the same update
    if not k:
        yield violation("kmsKeyId is not set: the log group is not encrypted with a customer-managed key")


def _truthy_env(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    return as_bool_text(v) is True or v.strip().lower() in ("2", "debug", "trace")


@rule(
    name="no-request-logging",
    description="Model servers and proxies do not log prompts or completions: no vLLM --enable-log-requests / "
                "--enable-log-outputs / VLLM_DEBUG_LOG_API_SERVER_RESPONSE, no OLLAMA_DEBUG, no nginx "
                "log_format with $request_body or credentials; wherever the runtime is started.",
    must="MUST NOT log PII/PHI in plaintext; exclude actual_prompt and actual_response from logs",
    guide="Security Considerations > Data Privacy and Compliance; Do and Don't Examples (DON'T log sensitive data)",
    severity="high",
    levels=levels(dev="mandatory"),
    remediation="Drop the request-logging flags (vLLM logs no requests by default since 0.10; older versions "
                "take --disable-log-requests); keep nginx access logs to method, status, sizes and latency.",
    types=WORKLOAD_TYPES + ("k8s:Deployment", "k8s:StatefulSet", "k8s:DaemonSet", "k8s:ReplicaSet", "k8s:Job",
                            "k8s:CronJob", "k8s:Pod", CONFIG_MAP),
)
def no_request_logging(r: Resource, ctx: Context) -> Iterator[Finding]:
    if r.type == CONFIG_MAP:
        data = r.get("data")
        if isinstance(data, dict):
            for k, v in data.items():
                if isinstance(v, str) and (m := _LOG_FORMAT.search(v)):
                    yield violation(f"{k}: an nginx log_format writes {m.group(1)} (prompts or "
                                    "credentials) to the access log")
        return
    w = workload(r)
    if w is None:
        return
    if w.opaque:
        yield undetermined("the workload's commands are not known yet")
        return
    for p in w.processes:
        if p.runtime == "vllm":
            for f in ("--enable-log-requests", "--enable-log-outputs"):
                if p.has(f):
                    yield violation(f"{p.label} runs with {f}: prompts{' and completions' if 'outputs' in f else ''} "
                                    "go to the logs")
            if _truthy_env(p.envv("VLLM_DEBUG_LOG_API_SERVER_RESPONSE")):
                yield violation(f"{p.label} sets VLLM_DEBUG_LOG_API_SERVER_RESPONSE: completions go to the logs")
        if p.runtime == "ollama" and _truthy_env(p.envv("OLLAMA_DEBUG")):
            yield violation(f"{p.label} sets OLLAMA_DEBUG: debug logs carry prompts")
        if p.runtime == "tgi" and isinstance(p.envv("RUST_LOG", "LOG_LEVEL"), str) and \
                re.search(r"\b(debug|trace)\b", p.envv("RUST_LOG", "LOG_LEVEL"), re.I):
            yield violation(f"{p.label} logs at debug/trace level, which records request inputs")
    texts = [w.text] if isinstance(w.text, str) else []
    texts += [" ".join(map(str, c.argv)) for c in w.containers]
    for t in texts:
        m = _LOG_FORMAT.search(t)
        if m:
            yield violation(f"an nginx log_format writes {m.group(1)} (prompts or credentials) to the access log")
            break


RULES = [log_retention, log_kms, no_request_logging]
