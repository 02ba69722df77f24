"""cloud-init user data for a GPU inference instance. Pure: renders text, snapshot-tested.

Boot order, as systemd units (each fails closed: a unit that fails stops everything after it,
and llm-unhealthy marks the instance Unhealthy so the Auto Scaling group replaces it). A long-running
unit restarts on failure, but only a few times within a window (StartLimitBurst/IntervalSec): on
systemd 252 `OnFailure=` fires only when the unit lands in `failed`, which `Restart=` alone never
lets happen, so without a start limit that trips a crash-looping server would never be replaced.
  llm-secrets    fetch each API client's key from Secrets Manager through the instance role
                 into /run/llm/keys.map (tmpfs); generate the instance's TLS key (never leaves it)
  llm-model      download models/<name>/<revision>/ from the model store, check the manifest's own
                 SHA-256 against the pinned digest, `sha256sum --check --strict` every file,
                 refuse files the manifest does not list
  llm-runtime    vLLM / Ollama / TGI, image pinned by digest, on the `llm` bridge network,
                 its port published on 127.0.0.1 only
  llm-proxy      nginx on the same network: HTTPS on the target port (published), bearer-token
                 auth, audit log; no container shares the host's network namespace
  llm-cwagent    CloudWatch agent: GPU metrics, the runtime's Prometheus metrics, the audit log
Nothing secret is in this text: only ARNs, names and digests.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field

from llm_platform.sizing.planner import DeploymentPlan

from .proxy import AUDIT_LOG, KEYS_MAP, METRICS_PORT, TARGET_PORT, TLS_DIR
from .runtime import CACHE_DIR, DOCKER_NETWORK, HEALTH_PATHS, MODEL_DIR, PORTS, ImageRef, container_spec, docker_run
from .telemetry import BRIDGE_SCRIPT, BRIDGE_SOURCE, bridge_command
from .verify import render_verify_script

VERIFY = "/usr/local/sbin/llm-verify-model"     # the one verification script (serving/verify.py)

PROXY_UID = 101      # the nginx user of the unprivileged nginx image
PROMETHEUS_CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/prometheus.yaml"


@dataclass(frozen=True)
class BootConfig:
    plan: DeploymentPlan
    region: str
    registry: str                         # <account>.dkr.ecr.<region>.amazonaws.com
    runtime_image: ImageRef               # pinned by digest
    proxy_image: ImageRef
    model_bucket: str
    model_prefix: str                     # models/<name>/<revision>
    manifest: str | None               # file name of the SHA256SUMS manifest; None: unverified (dev only)
    manifest_sha256: str | None
    client_secrets: dict[str, str] = field(default_factory=dict)   # client name -> Secrets Manager ARN
    nginx_conf: str = ""
    cwagent_parameter: str = ""           # SSM parameter holding the CloudWatch agent config
    prometheus_config: str = ""           # scrape config the agent reads
    max_tokens: int = 4096
    domain: str = "llm.internal"
    # capacity (components/gpu_fleet.py): the Auto Scaling lifecycle hook that holds a launch until the instance
    # is ready (warm-pool preparation or serving), and an EBS snapshot of the verified model directory
    lifecycle_hook: str = ""
    model_snapshot_id: str | None = None


def client_hash(name: str) -> str:
    """What the audit log records instead of the client's name or key."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _indent(text: str, n: int = 6) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.splitlines())


def _file(path: str, content: str, mode: str = "0644") -> str:
    return f"  - path: {path}\n    permissions: '{mode}'\n    owner: root:root\n    content: |\n{_indent(content)}\n"


RESTART_SEC = 10
START_LIMIT_BURST = 3     # starts allowed within the window; the next failure leaves the unit `failed`


def start_limit_window(run_seconds: int) -> int:
    """A window that holds START_LIMIT_BURST starts of a server that takes `run_seconds` to fail (e.g. a
    model load that ends in an out-of-memory error): shorter, and a slow crash loop never trips it."""
    return START_LIMIT_BURST * (run_seconds + RESTART_SEC) + 300


def _unit(description: str, body: str, after: str = "", requires: str = "", oneshot: bool = False,
          run_seconds: int = 120, on_failure: bool = True) -> str:
    dep = (f"After={after}\n" if after else "") + (f"Requires={requires}\n" if requires else "")
    if oneshot:
        kind = ("Type=oneshot\nRemainAfterExit=yes\nStandardOutput=append:/var/log/llm/boot.log\n"
                "StandardError=append:/var/log/llm/boot.log\n")
        limit = ""
    else:
        kind = f"Restart=on-failure\nRestartSec={RESTART_SEC}\n"
        limit = f"StartLimitIntervalSec={start_limit_window(run_seconds)}\nStartLimitBurst={START_LIMIT_BURST}\n"
    fail = "OnFailure=llm-unhealthy.service\n" if on_failure else ""
    return (f"[Unit]\nDescription={description}\n{dep}{limit}{fail}\n"
            f"[Service]\n{kind}{body}\n\n[Install]\nWantedBy=multi-user.target\n")


def render_user_data(boot: BootConfig) -> str:
    plan = boot.plan
    spec = container_spec(plan, boot.max_tokens)
    env = {
        "AWS_REGION": boot.region, "LLM_NAME": plan.name, "MODEL_BUCKET": boot.model_bucket,
        "MODEL_PREFIX": boot.model_prefix, "MANIFEST": boot.manifest or "",
        "MANIFEST_SHA256": boot.manifest_sha256 or "", "REGISTRY": boot.registry,
        "CWAGENT_PARAMETER": boot.cwagent_parameter,
        "LIFECYCLE_HOOK": boot.lifecycle_hook, "MODEL_SNAPSHOT_ID": boot.model_snapshot_id or "",
        "MODEL_SNAPSHOT_DEVICE": MODEL_SNAPSHOT_DEVICE if boot.model_snapshot_id else "",
        "RUNTIME_HEALTH_URL": f"http://127.0.0.1:{PORTS[plan.runtime]}{HEALTH_PATHS[plan.runtime]}",
    }
    env_file = "\n".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + "\n"

    fetch_secrets = "#!/bin/bash\n" \
        "# Client keys from Secrets Manager, through the instance role. Written to tmpfs only.\n" \
        "set -euo pipefail\n. /etc/llm/deployment.env\numask 077\nmkdir -p /run/llm\n" \
        "tmp=$(mktemp /run/llm/keys.XXXXXX)\n"
    # one case-sensitive regex entry per key (proxy.key_map_entry); a key that is not plain
    # alphanumerics could carry regex syntax into the map: refuse it rather than escape it
    for name, arn in sorted(boot.client_secrets.items()):
        fetch_secrets += ("key=$(aws secretsmanager get-secret-value --region \"$AWS_REGION\" "
                          f"--secret-id {shlex.quote(arn)} "
                          f"--query SecretString --output text)\n"
                          f"[[ \"$key\" =~ ^[A-Za-z0-9]{{32,}}$ ]] || "
                          f"{{ echo \"API key of client {name} is not 32+ letters and digits\" >&2; exit 1; }}\n"
                          f"printf '\"~^(?i:bearer) %s$\" \"{client_hash(name)}\";\\n' \"$key\" >> \"$tmp\"\n")
    fetch_secrets += (f"chown root:{PROXY_UID} \"$tmp\" && chmod 0440 \"$tmp\" && mv \"$tmp\" {KEYS_MAP}\n"
                      f"mkdir -p {TLS_DIR}\n"
                      f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 "
                      f"-subj \"/CN={plan.name}.{boot.domain}\" "
                      f"-keyout {TLS_DIR}/key.pem -out {TLS_DIR}/cert.pem 2>/dev/null\n"
                      f"chown -R root:{PROXY_UID} {TLS_DIR} && chmod 0750 {TLS_DIR} && chmod 0440 {TLS_DIR}/*.pem\n")

    fetch_model = f"""#!/bin/bash
# Download the pinned model and verify it. Any mismatch exits non-zero: the runtime never starts.
set -euo pipefail
. /etc/llm/deployment.env
dest={MODEL_DIR}
manifest=/opt/llm/SHA256SUMS
mkdir -p "$dest" {CACHE_DIR}
{WARM_START}
if [ -n "$MANIFEST" ]; then
  aws s3 cp --region "$AWS_REGION" --only-show-errors "s3://$MODEL_BUCKET/$MODEL_PREFIX/$MANIFEST" "$manifest"
  # the manifest alone first: nothing is downloaded past a manifest that is not the pinned one
  {VERIFY} - "$manifest" "$MANIFEST_SHA256"
fi
aws s3 sync --region "$AWS_REGION" --only-show-errors --no-progress --exact-timestamps \\
  --exclude "$MANIFEST" "s3://$MODEL_BUCKET/$MODEL_PREFIX/" "$dest"
if [ -n "$MANIFEST" ]; then
  {VERIFY} "$dest" "$manifest" "$MANIFEST_SHA256"
else
  echo "WARNING: no checksums configured for $LLM_NAME: weights are NOT verified (allowed outside prod)" >&2
fi
chmod -R a-w "$dest"
# what a later boot of this instance (a warm-pool start) checks before it skips the download
if [ -n "$MANIFEST" ]; then echo "$MANIFEST_SHA256 $MODEL_PREFIX" > {VERIFIED_MARKER}; fi
"""

    mark_unhealthy = """#!/bin/bash
# Tell the Auto Scaling group this instance cannot serve: it is replaced, not left half-working.
token=$(curl -s -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
id=$(curl -s -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/instance-id)
. /etc/llm/deployment.env
aws autoscaling set-instance-health --region "$AWS_REGION" --instance-id "$id" --health-status Unhealthy
"""

    ecr_login = ("/bin/sh -c 'aws ecr get-login-password --region ${AWS_REGION} | "
                 "docker login --username AWS --password-stdin ${REGISTRY}'")

    def pulls(image: ImageRef) -> str:
        # the tag first (fills the pull-through cache), then the digest that actually runs
        warm = f"ExecStartPre=/usr/bin/docker pull {image.warm}\n" if image.warm else ""
        return f"ExecStartPre={ecr_login}\n{warm}ExecStartPre=/usr/bin/docker pull {image.pinned}\n"

    # the runtime and the proxy share a user-defined bridge network (Docker's DNS resolves the runtime's
    # container name for the proxy); created by whichever unit starts first, kept across reboots
    network = (f"ExecStartPre=/bin/sh -c '/usr/bin/docker network inspect {DOCKER_NETWORK} >/dev/null 2>&1 || "
               f"/usr/bin/docker network create --driver bridge {DOCKER_NETWORK}'\n")

    runtime_cmd = " ".join(shlex.quote(a) for a in docker_run(spec, boot.runtime_image.pinned))
    proxy_cmd = " ".join(shlex.quote(a) for a in [
        "docker", "run", "--rm", "--name", "llm-proxy", "--network", DOCKER_NETWORK,
        # the API and metrics ports on the instance's address (the ALB and monitoring reach them)
        "-p", f"{TARGET_PORT}:{TARGET_PORT}", "-p", f"{METRICS_PORT}:{METRICS_PORT}", "--read-only",
        "--security-opt", "no-new-privileges", "--cap-drop", "ALL", "--user", f"{PROXY_UID}:{PROXY_UID}",
        "--tmpfs", "/tmp:rw,size=64m", "--log-driver", "journald",
        "-v", "/etc/llm-proxy/nginx.conf:/etc/nginx/nginx.conf:ro", "-v", "/run/llm:/run/llm:ro",
        "-v", "/var/log/llm-proxy:/var/log/llm-proxy", boot.proxy_image.pinned])

    units = {
        "llm-secrets": _unit("llm-platform: fetch API client keys, make the proxy's TLS key",
                             "EnvironmentFile=/etc/llm/deployment.env\nExecStart=/usr/local/sbin/llm-fetch-secrets",
                             after="network-online.target", oneshot=True),
        "llm-model": _unit("llm-platform: fetch and verify the model",
                           "EnvironmentFile=/etc/llm/deployment.env\nExecStart=/usr/local/sbin/llm-fetch-model\n"
                           "TimeoutStartSec=7200",
                           after="network-online.target", oneshot=True),
        "llm-runtime": _unit(f"llm-platform: {plan.runtime} serving {plan.name}",
                             "EnvironmentFile=/etc/llm/deployment.env\n" + pulls(boot.runtime_image) + network +
                             "ExecStartPre=-/usr/bin/docker rm -f llm-runtime\n"
                             f"ExecStart={runtime_cmd}\nTimeoutStartSec=1800",
                             after="docker.service llm-model.service", requires="docker.service llm-model.service",
                             run_seconds=plan.startup_seconds),
        "llm-proxy": _unit("llm-platform: TLS and auth proxy",
                           "EnvironmentFile=/etc/llm/deployment.env\n" + pulls(boot.proxy_image) + network +
                           "ExecStartPre=-/usr/bin/docker rm -f llm-proxy\n"
                           f"ExecStart={proxy_cmd}",
                           after="llm-secrets.service llm-runtime.service",
                           requires="docker.service llm-secrets.service"),
        # the agent ships with the Deep Learning Base AMI (an RPM); its config lives in SSM
        "llm-cwagent": _unit("llm-platform: CloudWatch agent (GPU and runtime metrics, audit log)",
                             "EnvironmentFile=/etc/llm/deployment.env\n"
                             "ExecStart=/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl "
                             "-a fetch-config "
                             "-m ec2 -s -c ssm:${CWAGENT_PARAMETER}",
                             after="network-online.target", oneshot=True),
    }
    if boot.lifecycle_hook:
        # serving units run only when the instance is headed InService; in Warmed:* they are skipped, not failed
        for name in ("llm-runtime", "llm-proxy"):
            units[name] = units[name].replace("[Service]\n", f"[Service]\nExecCondition={LIFECYCLE} serving\n", 1)
        units["llm-warm"] = _unit(
            "llm-platform: prepare a warm-pool instance (image pulled, model verified), then let it stop",
            "EnvironmentFile=/etc/llm/deployment.env\n"
            f"ExecCondition={LIFECYCLE} warming\n" + pulls(boot.runtime_image) + pulls(boot.proxy_image)
            .replace(f"ExecStartPre={ecr_login}\n", "") + f"ExecStart={LIFECYCLE} complete\nTimeoutStartSec=7200",
            after="docker.service llm-model.service", requires="docker.service llm-model.service", oneshot=True)
        units["llm-ready"] = _unit(
            "llm-platform: put the instance InService once the runtime answers its health check",
            "EnvironmentFile=/etc/llm/deployment.env\n"
            f"ExecCondition={LIFECYCLE} serving\nExecStart={LIFECYCLE} ready\nTimeoutStartSec=7200",
            after="llm-runtime.service llm-proxy.service", oneshot=True)
    bridge = bridge_command(plan)
    if bridge:
        # latency histograms -> quantile gauges the CloudWatch agent keeps (telemetry.py); no privileges
        units["llm-metrics-bridge"] = _unit(
            "llm-platform: runtime latency histograms as gauges for the CloudWatch agent",
            "DynamicUser=yes\nProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\nNoNewPrivileges=yes\n"
            "CapabilityBoundingSet=\nRestrictAddressFamilies=AF_INET AF_INET6\n"
            f"ExecStart={' '.join(shlex.quote(a) for a in bridge)}", after="network-online.target",
            on_failure=False)   # a telemetry helper that fails loses latency gauges, not the instance
    unhealthy = ("[Unit]\nDescription=llm-platform: mark this instance Unhealthy\n\n"
                 "[Service]\nType=oneshot\nExecStart=/usr/local/sbin/llm-mark-unhealthy\n")

    out = "#cloud-config\n# llm-platform user data: " + \
          f"{plan.name} ({plan.model}, {plan.runtime} {plan.precision}, " \
          f"TP {plan.tensor_parallel_size} x PP {plan.pipeline_parallel_size})\n"
    out += "write_files:\n"
    out += _file("/etc/llm/deployment.env", env_file)
    out += _file("/usr/local/sbin/llm-fetch-secrets", fetch_secrets, "0700")
    out += _file(VERIFY, render_verify_script(), "0755")
    out += _file("/usr/local/sbin/llm-fetch-model", fetch_model, "0700")
    out += _file("/usr/local/sbin/llm-mark-unhealthy", mark_unhealthy, "0700")
    if boot.lifecycle_hook:
        out += _file(LIFECYCLE, LIFECYCLE_SCRIPT, "0700")
    out += _file("/etc/llm-proxy/nginx.conf", boot.nginx_conf)
    if boot.prometheus_config:
        out += _file(PROMETHEUS_CONFIG, boot.prometheus_config)
    if bridge:
        out += _file(BRIDGE_SCRIPT, BRIDGE_SOURCE, "0755")
    out += _file("/etc/systemd/system/llm-unhealthy.service", unhealthy)
    for name, text in units.items():
        out += _file(f"/etc/systemd/system/{name}.service", text)
    out += ("runcmd:\n"
            "  - [sh, -c, 'command -v docker >/dev/null || dnf install -y docker']"
            "   # AL2023 repos via the S3 endpoint\n"
            "  - [nvidia-ctk, runtime, configure, --runtime=docker]\n"
            "  - [systemctl, enable, --now, docker.service]\n"
            f"  - [install, -d, -o, '{PROXY_UID}', -g, '{PROXY_UID}', -m, '0750', /var/log/llm-proxy]\n"
            "  - [install, -d, -m, '0750', /var/log/llm]\n"
            f"  - [touch, {AUDIT_LOG}]\n"
            f"  - [chown, '{PROXY_UID}:{PROXY_UID}', {AUDIT_LOG}]\n"
            "  - [systemctl, daemon-reload]\n"
            "  - [systemctl, enable, --now, --no-block, "
            + ", ".join(f"{u}.service" for u in units) + "]\n")
    return out


LIFECYCLE = "/usr/local/sbin/llm-lifecycle"
VERIFIED_MARKER = "/opt/llm/verified"           # "<manifest sha256> <model prefix>" once the weights are verified
MODEL_SNAPSHOT_DEVICE = "/dev/sdf"               # the launch template maps the model snapshot's volume here
SNAPSHOT_MOUNT = "/opt/llm/snapshot"

# Inserted into llm-fetch-model before any download. Two ways to skip the download and the per-file hashing, each
# tied to the plan's pinned manifest digest so that nothing unverified is served:
# - warm start: this instance verified these weights before it stopped in the warm pool (the marker, on the
#   CMK-encrypted root volume, names the digest and the prefix, and the manifest on disk still hashes to it);
# - snapshot: the volume at $MODEL_SNAPSHOT_DEVICE was created from the snapshot the plan names (EC2 says so,
#   not the volume's content) and its SHA256SUMS hashes to the pinned digest; it is mounted read-only.
# Anything else falls through to the full download and verification below.
WARM_START = f"""if [ -n "$MANIFEST" ] && [ -f {VERIFIED_MARKER} ] \\
   && [ "$(cat {VERIFIED_MARKER})" = "$MANIFEST_SHA256 $MODEL_PREFIX" ] \\
   && echo "$MANIFEST_SHA256  $manifest" | sha256sum --check --strict --quiet 2>/dev/null; then
  echo "warm start: $dest was verified against $MANIFEST_SHA256 before this instance stopped"
  exit 0
fi
if [ -n "$MANIFEST" ] && [ -n "${{MODEL_SNAPSHOT_ID:-}}" ]; then
  token=$(curl -s -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
  iid=$(curl -s -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/instance-id)
  read -r vol snap < <(aws ec2 describe-volumes --region "$AWS_REGION" \\
    --filters "Name=attachment.instance-id,Values=$iid" "Name=attachment.device,Values=${{MODEL_SNAPSHOT_DEVICE:-}}" \\
    --query 'Volumes[0].[VolumeId,SnapshotId]' --output text) || true
  if [ "${{snap:-}}" = "$MODEL_SNAPSHOT_ID" ]; then
    # an EBS volume's NVMe serial is its id without the dash
    blk=$(lsblk -dno NAME,SERIAL | awk -v s="${{vol/-/}}" '$2 == s {{print "/dev/" $1}}')
    mkdir -p {SNAPSHOT_MOUNT}
    if [ -n "$blk" ] && mount -o ro,nodev,nosuid "$blk" {SNAPSHOT_MOUNT} \\
       && echo "$MANIFEST_SHA256  {SNAPSHOT_MOUNT}/$MANIFEST" | sha256sum --check --strict --quiet; then
      cp {SNAPSHOT_MOUNT}/"$MANIFEST" "$manifest"
      mount --bind -o ro {SNAPSHOT_MOUNT} "$dest"
      echo "snapshot start: $dest is $MODEL_SNAPSHOT_ID ($vol), manifest $MANIFEST_SHA256"
      exit 0
    fi
    echo "snapshot $MODEL_SNAPSHOT_ID on $vol does not carry the pinned manifest: downloading instead" >&2
    umount {SNAPSHOT_MOUNT} 2>/dev/null || true
  else
    echo "the model volume is from ${{snap:-no snapshot}}, not $MODEL_SNAPSHOT_ID: downloading instead" >&2
  fi
fi"""

# The Auto Scaling lifecycle hook on launch holds every instance in Pending:Wait (or Warmed:Pending:Wait) until this
# script completes it: a warm-pool instance once its image is pulled and its weights verified (the group then stops
# it), an instance headed InService once its runtime answers its health check (so no instance takes traffic, and no
# scale-out counts as done, while a model still loads).
LIFECYCLE_SCRIPT = """#!/bin/bash
# llm-lifecycle state|warming|serving|complete|ready
set -euo pipefail
. /etc/llm/deployment.env
imds() {
  local token
  token=$(curl -s -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
  curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
state() {
  # Auto Scaling publishes the target state shortly after boot: Warmed:Stopped, Warmed:Running or InService
  for _ in $(seq 1 60); do
    s=$(imds autoscaling/target-lifecycle-state || true)
    if [ -n "$s" ]; then echo "$s"; return; fi
    sleep 2
  done
  echo InService     # not in a group with a warm pool: serve
}
complete() {
  aws autoscaling complete-lifecycle-action --region "$AWS_REGION" --lifecycle-action-result CONTINUE \
    --lifecycle-hook-name "$LIFECYCLE_HOOK" --instance-id "$(imds instance-id)" \
    --auto-scaling-group-name "$(imds tags/instance/aws:autoscaling:groupName)" \\
    || echo "no lifecycle action to complete (launched before the group had its hook?)" >&2
}
case "${1:-state}" in
  state) state ;;
  warming) [[ "$(state)" == Warmed:* ]] ;;
  serving) [[ "$(state)" != Warmed:* ]] ;;
  complete) complete ;;
  ready)
    until curl -sf -o /dev/null "$RUNTIME_HEALTH_URL"; do sleep 5; done
    complete ;;
  *) echo "usage: llm-lifecycle state|warming|serving|complete|ready" >&2; exit 2 ;;
esac
"""


def decode_user_data(encoded: str) -> str:
    """The inverse of gpu_fleet.encode_user_data: base64, gunzipped when gzip-compressed."""
    import base64
    import gzip
    raw = base64.b64decode(encoded)
    return gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
