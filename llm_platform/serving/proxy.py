"""The nginx TLS and auth proxy that fronts every runtime. Pure: renders nginx.conf text.

Why it exists: vLLM's `--api-key` guards only /v1 (its other routes stay open), Ollama has no
authentication at all, and none of them terminates TLS. The proxy is the only listener beyond
loopback on an inference instance:
- :8443 HTTPS (the ALB target port): bearer token required on every API route, checked against
  the per-client keys fetched from Secrets Manager at boot into /run/llm/keys.map (tmpfs, 0400);
  an allow-list of API routes per runtime (model management such as Ollama's /api/pull or
  /api/delete is never reachable); /health open for the load balancer; request bodies capped at
  api.max_prompt_bytes; streaming-friendly (no buffering, hour-long read timeouts).
- :9443 HTTPS: /metrics only, only from network.monitoring_cidrs.
Audit: one JSON line per request (time, a hash of the client's id, model, route, status, bytes,
latency), never a prompt or a completion.
"""
from __future__ import annotations

from llm_platform.sizing.planner import DeploymentPlan
from .runtime import PORTS, container_spec

TARGET_PORT = 8443
METRICS_PORT = 9443
KEYS_MAP = "/run/llm/keys.map"
TLS_DIR = "/run/llm/tls"
AUDIT_LOG = "/var/log/llm-proxy/audit.log"

# API routes each runtime exposes through the proxy; everything else answers 404.
API_ROUTES = {
    "vllm": r"^/v1/(chat/completions|completions|embeddings|models|responses)$",
    "tgi": r"^/(v1/chat/completions|v1/completions|v1/models|generate|generate_stream|info)$",
    "ollama": r"^/(v1/chat/completions|v1/completions|v1/embeddings|v1/models|api/generate|api/chat|api/embed|"
              r"api/embeddings|api/tags|api/show|api/ps|api/version)$",
}


def render_nginx_conf(plan: DeploymentPlan, max_prompt_bytes: int, monitoring_cidrs: list[str]) -> str:
    spec = container_spec(plan, max_tokens=0)
    upstream = f"127.0.0.1:{PORTS[plan.runtime]}"
    allow = "\n".join(f"            allow {c};" for c in monitoring_cidrs) or "            # no monitoring_cidrs configured"
    metrics = (f"proxy_pass http://llm_runtime{spec.metrics_path};" if spec.metrics_path
               else "return 404;   # this runtime exposes no Prometheus metrics")
    return f"""# Rendered by llm-platform for deployment {plan.name} ({plan.runtime}). Do not edit on the host.
worker_processes auto;
pid /tmp/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}

http {{
    server_tokens off;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;

    # Authorization header -> hash of the client's id; "" when the key is unknown.
    # Keys are "Bearer " + 48 characters: longer than the default 64-byte map bucket.
    map_hash_bucket_size 256;
    map $http_authorization $llm_client {{
        default "";
        include {KEYS_MAP};
    }}

    log_format llm_audit escape=json '{{"time":"$time_iso8601","client":"$llm_client","model":"{plan.name}",'
        '"method":"$request_method","route":"$uri","status":$status,"request_bytes":$request_length,'
        '"response_bytes":$bytes_sent,"latency_seconds":$request_time,"upstream_seconds":"$upstream_response_time",'
        '"request_id":"$request_id"}}';
    access_log {AUDIT_LOG} llm_audit;

    upstream llm_runtime {{
        server {upstream};
        keepalive 64;
    }}

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers off;
    ssl_certificate {TLS_DIR}/cert.pem;
    ssl_certificate_key {TLS_DIR}/key.pem;

    server {{
        listen {TARGET_PORT} ssl;
        http2 on;
        client_max_body_size {max_prompt_bytes};
        client_body_buffer_size {min(max_prompt_bytes, 1048576)};

        location = /health {{
            access_log off;
            proxy_pass http://llm_runtime{spec.health_path};
        }}

        location ~ {API_ROUTES[plan.runtime]} {{
            if ($llm_client = "") {{
                add_header WWW-Authenticate 'Bearer realm="llm-platform"' always;
                return 401;
            }}
            proxy_pass http://llm_runtime;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";        # the runtime never sees client keys
            proxy_set_header X-Request-Id $request_id;
            proxy_buffering off;                      # stream tokens as they are produced
            proxy_request_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}

        location / {{
            return 404;
        }}
    }}

    server {{
        listen {METRICS_PORT} ssl;
        access_log off;
        location = /metrics {{
{allow}
            deny all;
            {metrics}
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""
