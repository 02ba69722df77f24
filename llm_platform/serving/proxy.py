"""The nginx TLS and auth proxy that fronts every runtime. Pure: renders nginx.conf text.

Why it exists: vLLM's `--api-key` guards only /v1 (its other routes stay open), Ollama has no
authentication at all, and none of them terminates TLS. The proxy is the only listener beyond
loopback on an inference instance:
- :8443 HTTPS (the ALB target port): bearer token required on every API route, checked against
  the per-client keys fetched from Secrets Manager at boot into /run/llm/keys.map (tmpfs, 0440);
  an allow-list of API routes per runtime, each with its one method (model management such as
  Ollama's /api/pull or vLLM's /v1/load_lora_adapter is never reachable); /health open (GET) for
  the load balancer; request bodies capped at api.max_prompt_bytes; streaming-friendly responses.
- :9443 HTTPS: /metrics only (GET), only from network.monitoring_cidrs.
Audit: one JSON line per request (time, a hash of the client's id, model, route, status, bytes,
latency), never a prompt, a completion, a query string or a header value.

Hardening, each closing a hole a red team found:
- Keys compare exactly. nginx `map` string keys are case-insensitive (a swap-cased key matched), so
  each key is a case-sensitive regex entry `"~^(?i:bearer) <key>$"`: only the auth scheme ignores
  case (RFC 9110 §11.1), the key does not. Keys must be alphanumeric (key_map_entry refuses others),
  so no regex metacharacter can appear in an entry.
- The runtime sees only the normalised route. The allow-list matches nginx's decoded, merged `$uri`;
  the raw request line could differ (`/v1/load_lora_adapter%2f..%2fmodels`), so a raw URI with an
  encoded slash, dot, backslash or NUL, a dot segment or a backslash is refused (400), and the proxy
  forwards `$uri` itself (no query string: no allowed route takes one), never the client's bytes.
- Methods per route: GET for listings and health, POST for inference; anything else 405.
- Headers are an allow-list: the runtime gets Content-Type, Accept and a request id; never the
  client's Authorization, Cookie, Forwarded or X-Forwarded-*/X-Real-IP headers (nothing downstream
  can be fooled about who called, and no credential reaches a process that may run model code).
- Bodies are read completely before anything is sent upstream (request buffering on): an oversize
  or chunked body over the cap is refused with 413 before the runtime sees a byte, the runtime
  always gets a Content-Length request, and nginx (>= 1.21.1) refuses Content-Length together with
  Transfer-Encoding, so nothing can be smuggled past the proxy.
- Ollama is reachable only through its OpenAI-compatible routes. Its native API takes per-request
  `options` (num_ctx, num_gpu, ...), so a client could grow the context past the planned one and
  force a reload that does not fit in memory; stock nginx cannot inspect JSON bodies (no njs in
  nginx-light, and a regex over JSON is bypassed by `\\u` escapes). Ollama's OpenAI layer
  (openai/openai.go: ChatCompletionRequest, CompletionRequest, EmbedRequest) has no options field:
  it maps only stop, max_tokens, temperature, seed, penalties and top_p, so num_ctx stays at
  OLLAMA_CONTEXT_LENGTH, the plan's context.
"""
from __future__ import annotations

import ipaddress
import re

from llm_platform.sizing.planner import DeploymentPlan

from .runtime import PORTS, container_spec

TARGET_PORT = 8443
METRICS_PORT = 9443
CLUSTER_METRICS_PORT = 9444        # EKS: /metrics for the monitoring namespace, admitted by NetworkPolicy only
KEYS_MAP = "/run/llm/keys.map"
TLS_DIR = "/run/llm/tls"
AUDIT_LOG = "/var/log/llm-proxy/audit.log"
DOCKER_DNS = "127.0.0.11"          # Docker's embedded DNS server on user-defined networks

# API routes each runtime exposes through the proxy, by the one method each takes; everything
# else answers 404 (unknown route) or 405 (known route, wrong method).
API_ROUTES = {
    "vllm": {"GET": r"^/v1/models$",
             "POST": r"^/v1/(chat/completions|completions|embeddings|responses)$"},
    "tgi": {"GET": r"^/(v1/models|info)$",
            "POST": r"^/(v1/chat/completions|v1/completions|generate|generate_stream)$"},
    "ollama": {"GET": r"^/v1/models$",
               "POST": r"^/v1/(chat/completions|completions|embeddings)$"},
}
# refused anywhere in the raw request target (case-insensitive): encoded '/', '.', '\', NUL; '..'; a
# backslash (written \x5c: nginx would unescape "\\" inside a quoted string before PCRE sees it)
RAW_URI_REFUSED = r"(%2f|%2e|%5c|%00|\.\.|\x5c)"
KEY_PATTERN = re.compile(r"[A-Za-z0-9]{32,}")
# headers the runtime receives; every other client header is dropped
FORWARDED_HEADERS = {"Content-Type": "$content_type", "Accept": "$http_accept", "X-Request-Id": "$request_id"}


def key_map_entry(key: str, client_id_hash: str) -> str:
    """One line of the proxy's key map: a case-sensitive regex for the key (the scheme may be any case)."""
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError("API keys must be at least 32 ASCII letters and digits (the proxy compares them as a "
                         "regular expression; anything else is refused rather than escaped)")
    if not re.fullmatch(r"[0-9a-f]{8,64}", client_id_hash):
        raise ValueError("the client id hash must be lowercase hex")
    return f'"~^(?i:bearer) {key}$" "{client_id_hash}";\n'


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _headers(indent: str, host: str) -> str:
    lines = ["proxy_pass_request_headers off;     # allow-list below: no Cookie, Authorization, Forwarded, X-*",
             f'proxy_set_header Host "{host}";', 'proxy_set_header Connection "";']
    lines += [f"proxy_set_header {k} {v};" for k, v in FORWARDED_HEADERS.items()]
    return "\n".join(indent + line for line in lines)


def render_nginx_conf(plan: DeploymentPlan, max_prompt_bytes: int, monitoring_cidrs: list[str],
                      upstream_host: str = "127.0.0.1", cluster_metrics: bool = False) -> str:
    """`upstream_host`: where the runtime answers. 127.0.0.1 when the proxy shares the runtime's network
    namespace (a pod's sidecar, Docker's `container:` mode); the runtime's container name on a
    user-defined Docker network (EC2), re-resolved through Docker's DNS so a restarted runtime is found.
    `cluster_metrics` (EKS): a second metrics listener on CLUSTER_METRICS_PORT for the in-cluster
    Prometheus, whose pod addresses are the VPC's own: nginx cannot tell it from any other pod by address,
    so that port answers anyone and the pod's NetworkPolicy admits only the monitoring namespace to it;
    METRICS_PORT stays limited to monitoring_cidrs."""
    spec = container_spec(plan, max_tokens=0)
    port = PORTS[plan.runtime]
    if _is_ip(upstream_host):
        server, resolver = f"server {upstream_host}:{port};", ""
    else:
        # `resolve` (nginx >= 1.27.3) follows the container's address across restarts
        server = f"zone llm_runtime 64k;\n        server {upstream_host}:{port} resolve;"
        resolver = f"    resolver {DOCKER_DNS} valid=10s ipv6=off;\n"
    allow = ("\n".join(f"            allow {c};" for c in monitoring_cidrs)
             or "            # no monitoring_cidrs configured")
    # Ollama checks the Host header against its bind address (DNS-rebinding guard): send a loopback one
    host = f"127.0.0.1:{port}"
    metrics = (f"proxy_pass http://llm_runtime{spec.metrics_path};" if spec.metrics_path
               else "return 404;   # this runtime exposes no Prometheus metrics")
    routes = API_ROUTES[plan.runtime]

    def metrics_server(port: int, allow_rules: str) -> str:
        return f"""
    server {{
        listen {port} ssl;
        access_log off;
        location = /metrics {{
{allow_rules}
            if ($request_method !~ ^(GET|HEAD)$) {{
                return 405;
            }}
            proxy_pass_request_body off;
{_headers("            ", host)}
            {metrics}
        }}
        location / {{
            return 404;
        }}
    }}
"""
    servers = metrics_server(METRICS_PORT, f"{allow}\n            deny all;")
    if cluster_metrics:
        servers += metrics_server(CLUSTER_METRICS_PORT, "            # admitted by the pod's NetworkPolicy: the "
                                                        "monitoring namespace only")

    def api_location(method: str, pattern: str) -> str:
        allowed = "^(GET|HEAD)$" if method == "GET" else "^POST$"
        return f"""
        location ~ {pattern} {{
            if ($llm_client = "") {{
                add_header WWW-Authenticate 'Bearer realm="llm-platform"' always;
                return 401;
            }}
            if ($request_method !~ {allowed}) {{
                add_header Allow '{method}' always;
                return 405;
            }}
            proxy_pass http://llm_runtime$uri;          # the normalised route, never the raw request line
            proxy_http_version 1.1;
{_headers("            ", host)}
            proxy_request_buffering on;               # whole body first: cap enforced, no chunked upstream
            proxy_buffering off;                      # stream tokens as they are produced
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
"""

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
{resolver}
    # Authorization header -> hash of the client's id; "" when the key is unknown. Every entry is a
    # case-sensitive regex (`~`): plain map keys would match a key in any letter case.
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
        {server}
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
        ignore_invalid_headers on;
        underscores_in_headers off;

        # the allow-list below judges the normalised $uri: refuse raw targets that normalise differently
        if ($request_uri ~* "{RAW_URI_REFUSED}") {{
            return 400;
        }}

        location = /health {{
            access_log off;
            if ($request_method !~ ^(GET|HEAD)$) {{
                return 405;
            }}
            proxy_pass http://llm_runtime{spec.health_path};
            proxy_pass_request_body off;
{_headers("            ", host)}
        }}
{api_location("GET", routes["GET"])}{api_location("POST", routes["POST"])}
        location / {{
            return 404;
        }}
    }}
{servers}}}
"""
