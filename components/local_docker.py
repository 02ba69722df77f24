"""DockerHost and docker_serving: `platform: docker`, the models on one workstation with Docker (pulumi-docker).

Per model, the same two processes as on an EC2 instance or in a pod, with the same isolation:
- the runtime container (Ollama, or vLLM) with the plan's settings (components/runtime.py), bound to
  127.0.0.1 inside its own network namespace; GPUs from `local` (the plan was sized against them);
  weights from a Docker volume, mounted read-only; when the model has `checksums`, the container's
  entrypoint checks the manifest against the pinned digest and every file against the manifest
  before the server starts (fail closed); read-only root, all capabilities dropped, no new
  privileges, not root;
- the nginx TLS + bearer-key proxy (components/proxy.py) sharing the runtime's network namespace
  (`network_mode: container:<runtime>`, like a pod's sidecar), so it reaches the runtime on loopback;
  the only published port is the proxy's, on 127.0.0.1 (`local.port`, then +1 per model). Nothing
  listens on the workstation's other interfaces.
The proxy's config, key map and TLS key pair go into a per-model volume (mounted at /run/llm) through a
one-shot helper container (`<model>-proxy-config`, the proxy image). The Docker provider uploads files
by extracting an archive at "/", which the daemon refuses on a read-only root even when the target is a
volume, so the proxy itself never takes uploads and keeps its read-only root. The helper has a writable
root, is created and started once before the proxy (`attach`, `must_run=False`), has no network and no
capabilities, and runs as root only so that, as the owner of the volumes' roots, it can hand the audit
log directory to the proxy's group (`chgrp 101`, 0770: nginx runs as uid 101 and the volume is created
root-owned). The files are uploaded with their owner and mode (keys and TLS key 0400, owned by uid 101);
their contents are Pulumi secrets, so no key appears in plaintext in a resource's inputs, and none is
passed through an environment variable (which `docker inspect` would show). When the helper is
replaced (new keys, new config), so is the proxy (a label carries the helper's id), and nginx reads the
new files. Client keys are generated (pulumi-random) and exported as secrets. Images are pinned by
digest, pulled straight from their registries (no ECR here).

vLLM runs as uid 1000, which the image has no passwd entry for, and /root is 0700 there: USER, LOGNAME
and HOME are set (torch's getpass reads them before the passwd database) and every cache (HF_HOME,
XDG_CACHE_HOME, VLLM_CACHE_ROOT, VLLM_CONFIG_ROOT, TRITON_CACHE_DIR, TORCHINDUCTOR_CACHE_DIR) lives under
/cache, a tmpfs owned by that uid and mounted `exec` (Triton loads the kernels it compiles from there).

Stage models into the volume the way the README's "Staging a model" says (for Ollama: its own model
directory), e.g. `docker run --rm -v llm-<stack>-<name>-model:/model -v $PWD/staged:/src:ro alpine cp -a /src/. /model`.
"""
from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_random as random
import pulumi_tls as tls

from llm_platform import catalog
from llm_platform.serving.proxy import AUDIT_LOG, KEYS_MAP, TARGET_PORT, TLS_DIR, key_map_entry, render_nginx_conf
from llm_platform.serving.runtime import container_spec
from llm_platform.serving.userdata import PROXY_UID, client_hash
from llm_platform.sizing.planner import DeploymentPlan

RUNTIME_UID = "1000:1000"
LOOPBACK = "127.0.0.1"
CACHE = "/cache"            # the runtime's writable HOME and caches (a tmpfs owned by RUNTIME_UID)
CACHE_ENV = {"HOME": CACHE, "USER": "llm", "LOGNAME": "llm", "XDG_CACHE_HOME": CACHE,
             "HF_HOME": f"{CACHE}/huggingface", "VLLM_CACHE_ROOT": f"{CACHE}/vllm",
             "VLLM_CONFIG_ROOT": f"{CACHE}/vllm-config", "TRITON_CACHE_DIR": f"{CACHE}/triton",
             "TORCHINDUCTOR_CACHE_DIR": f"{CACHE}/inductor"}
PROXY_DIR = KEYS_MAP.rsplit("/", 1)[0]          # /run/llm: the per-model proxy volume
AUDIT_DIR = AUDIT_LOG.rsplit("/", 1)[0]         # /var/log/llm-proxy: the stack's audit volume


def pinned(key: str, override: str | None) -> str:
    """<registry>/<repository>@sha256:<digest>, from the catalog (upstream registry) or the stack's override."""
    if override:
        return override
    img = catalog.load().images[key]
    host = {"docker-hub": "docker.io", "ecr-public": "public.ecr.aws"}[img["upstream"]]
    return f"{host}/{img['repository']}@{img['digest']}"


def runtime_env(runtime: str, env: dict) -> dict:
    """The runtime's environment on Docker: the plan's, with HOME and USER at CACHE and, for the Python
    servers (vLLM, TGI), every cache under it (a value under /root/.cache, unreachable for a non-root
    uid, moves there too). Ollama only needs a writable HOME (~/.ollama)."""
    moved = {k: CACHE + v[len("/root/.cache"):] if isinstance(v, str) and v.startswith("/root/.cache") else v
             for k, v in env.items()}
    extra = CACHE_ENV if runtime != "ollama" else {k: CACHE_ENV[k] for k in ("HOME", "USER", "LOGNAME")}
    return {**moved, **extra}


def proxy_config_script(proxy_uid: int) -> str:
    """The helper's script: the uploads are already in the proxy volume when it starts; it opens the
    audit directory to the proxy's group (root owns the volume's root, so no capability is needed) and
    fails, with the reason in its log, if a file is missing."""
    return (f"chgrp {proxy_uid} {AUDIT_DIR} && chmod 0770 {AUDIT_DIR}\n"
            f"for f in {PROXY_DIR}/nginx.conf {KEYS_MAP} {TLS_DIR}/cert.pem {TLS_DIR}/key.pem; do\n"
            f"  test -s \"$f\" || {{ echo \"missing $f\" >&2; exit 1; }}\n"
            f"done\n")


def verify_then(command: str, manifest: str | None, manifest_sha256: str | None) -> str:
    """The runtime's entrypoint script: verify the staged weights, then exec the server."""
    if not manifest:
        return f"echo 'WARNING: no checksums configured: weights are NOT verified' >&2\nexec {command}\n"
    m = f"/model/{shlex.quote(manifest)}"
    return (f"echo {manifest_sha256}'  '{m} | sha256sum -c --strict --quiet"
            f" || {{ echo 'manifest digest differs from the pinned one' >&2; exit 1; }}\n"
            f"cd /model && sha256sum -c --strict --quiet {m}\n"
            f"exec {command}\n")


def uid_of(user: str) -> str:
    return user.split(":", 1)[0]


def gid_of(user: str) -> str:
    return user.split(":", 1)[-1]


@dataclass(frozen=True)
class DockerHostArgs:
    stack: str
    clients: Sequence[str]                             # one generated API key per client
    runtimes: Sequence[str]                            # catalog image keys the models run (vllm, ollama, tgi)
    image_overrides: Mapping[str, str] = field(default_factory=dict)


class DockerHost(pulumi.ComponentResource):
    """What the models on one workstation share: the bridge network (no inter-container traffic), the audit
    volume, the pinned images, the client keys and the proxies' TLS key pair.

    Outputs: network_name, audit_volume_name, images (key -> pinned reference), client_keys (client -> key,
    secret), keys_map (the proxies' key map, secret), cert_pem. Handles: `pulls` (image pulls to wait for)."""

    network_name: pulumi.Output[str]
    audit_volume_name: pulumi.Output[str]
    images: dict[str, str]
    client_keys: dict[str, pulumi.Output[str]]
    keys_map: pulumi.Output[str]
    cert_pem: pulumi.Output[str]
    pulls: dict[str, docker.RemoteImage]

    def __init__(self, name: str, args: DockerHostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:local:DockerHost", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack = self._stack = args.stack
        labels = [{"label": "llm-platform.stack", "value": stack}]
        passwords = {c: random.RandomPassword(f"{name}-{c}-api-key", length=48, special=False, min_lower=4,
                                              min_upper=4, min_numeric=4, opts=child) for c in args.clients}
        names = sorted(passwords)
        self.keys_map = pulumi.Output.secret(pulumi.Output.all(*[passwords[c].result for c in names]).apply(
            lambda vals: "".join(key_map_entry(v, client_hash(n)) for n, v in zip(names, vals, strict=True))))
        self.client_keys = {c: pulumi.Output.secret(k.result) for c, k in passwords.items()}
        tls_key = tls.PrivateKey(f"{name}-proxy", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        self._key_pem = pulumi.Output.secret(tls_key.private_key_pem)
        cert = tls.SelfSignedCert(f"{name}-proxy", private_key_pem=tls_key.private_key_pem,
                                  validity_period_hours=24 * 397, early_renewal_hours=24 * 30,
                                  subject={"common_name": "localhost", "organization": "llm-platform"},
                                  dns_names=["localhost"], ip_addresses=[LOOPBACK],
                                  allowed_uses=["digital_signature", "server_auth"], opts=child)
        self.cert_pem = cert.cert_pem
        network = docker.Network(f"{name}-net", name=f"llm-{stack}", driver="bridge",
                                 options={"com.docker.network.bridge.enable_icc": "false"}, labels=labels, opts=child)
        audit = docker.Volume(f"{name}-audit", name=f"llm-{stack}-audit", labels=labels, opts=child)
        self.images, self.pulls = {}, {}
        for key in sorted(set(args.runtimes) | {"proxy"}):
            self.images[key] = pinned(key, args.image_overrides.get(key))
            self.pulls[key] = docker.RemoteImage(f"{name}-{key}", name=self.images[key], keep_locally=True, opts=child)
        self.network_name, self.audit_volume_name = network.name, audit.name
        self.register_outputs({"network_name": self.network_name, "audit_volume_name": self.audit_volume_name,
                               "images": self.images, "client_keys": self.client_keys, "keys_map": self.keys_map,
                               "cert_pem": self.cert_pem})

    def serving(self, plan: DeploymentPlan, port: int, max_prompt_bytes: int, max_tokens: int,
                manifest: str | None = None, manifest_sha256: str | None = None) -> DockerServingArgs:
        """The per-model Args for a deployment on this host."""
        return DockerServingArgs(
            plan=plan, stack=self._stack, port=port, network_name=self.network_name,
            audit_volume_name=self.audit_volume_name, runtime_image=self.images[plan.runtime],
            proxy_image=self.images["proxy"], keys_map=self.keys_map, cert_pem=self.cert_pem, key_pem=self._key_pem,
            max_prompt_bytes=max_prompt_bytes, max_tokens=max_tokens, manifest=manifest,
            manifest_sha256=manifest_sha256, after=(self.pulls[plan.runtime], self.pulls["proxy"]))


@dataclass(frozen=True)
class DockerServingArgs:
    """One model's containers on a Docker host (made by ModelDeployment, parented to it)."""
    plan: DeploymentPlan
    stack: str
    port: int                                          # the proxy's published port on 127.0.0.1
    network_name: pulumi.Input[str]
    audit_volume_name: pulumi.Input[str]
    runtime_image: str                                 # pinned references
    proxy_image: str
    keys_map: pulumi.Input[str]                        # secret
    cert_pem: pulumi.Input[str]
    key_pem: pulumi.Input[str]                         # secret
    max_prompt_bytes: int = 131072
    max_tokens: int = 4096
    manifest: str | None = None
    manifest_sha256: str | None = None
    after: Sequence[pulumi.Resource] = ()              # image pulls


def docker_serving(name: str, args: DockerServingArgs, parent: pulumi.Resource
                   ) -> tuple[docker.Container, docker.Container]:
    """The runtime container and its proxy sidecar (plus the model and proxy volumes and the one-shot proxy
    config helper), each named `<name>-<role>`. Returns (runtime, proxy)."""
    plan, stack = args.plan, args.stack
    labels = [{"label": "llm-platform.stack", "value": stack}]
    child = pulumi.ResourceOptions(parent=parent)
    spec = container_spec(plan, args.max_tokens, host=LOOPBACK)
    model_vol = docker.Volume(f"{name}-model", name=f"llm-{stack}-{plan.name}-model", labels=labels, opts=child)
    proxy_vol = docker.Volume(f"{name}-proxy", name=f"llm-{stack}-{plan.name}-proxy", labels=labels, opts=child)
    server = ("ollama serve" if plan.runtime == "ollama"
              else f"{'vllm serve' if plan.runtime == 'vllm' else 'text-generation-launcher'} "
                   + " ".join(shlex.quote(a) for a in spec.args))
    script = verify_then(server, args.manifest, args.manifest_sha256)
    pulls = list(args.after)
    runtime = docker.Container(
        f"{name}-runtime", name=f"llm-{stack}-{plan.name}", image=args.runtime_image, entrypoints=["/bin/sh", "-ec"],
        command=[script], envs=[f"{k}={v}" for k, v in sorted(runtime_env(plan.runtime, spec.env).items())],
        user=RUNTIME_UID, read_only=True, capabilities={"drops": ["ALL"]},
        security_opts=["no-new-privileges"],
        tmpfs={"/tmp": "rw,size=4g",
               CACHE: f"rw,exec,nosuid,nodev,size=8g,uid={uid_of(RUNTIME_UID)},gid={gid_of(RUNTIME_UID)},"
                      "mode=0700"},
        shm_size=16384 if plan.runtime != "ollama" else None,
        gpus="all" if plan.gpu_count else None,
        volumes=[{"volume_name": model_vol.name, "container_path": "/model", "read_only": True}],
        networks_advanced=[{"name": args.network_name}],
        # the proxy lives in this network namespace: its port is the only one published, on loopback
        ports=[{"internal": TARGET_PORT, "external": args.port, "ip": LOOPBACK, "protocol": "tcp"}],
        restart="unless-stopped", must_run=True, labels=labels + [{"label": "llm-platform.model",
                                                                   "value": plan.model}],
        # once named after the deployment alone: the alias keeps it in place
        opts=pulumi.ResourceOptions(parent=parent, depends_on=pulls, delete_before_replace=True,   # fixed name, port
                                    aliases=[pulumi.Alias(name=plan.name)]))
    conf = render_nginx_conf(plan, args.max_prompt_bytes, [])
    uid = str(PROXY_UID)
    proxy_mounts = [{"volume_name": proxy_vol.name, "container_path": PROXY_DIR},
                    {"volume_name": args.audit_volume_name, "container_path": AUDIT_DIR}]
    # One shot, before the proxy: uploads need a writable root (see the module docstring).
    config = docker.Container(
        f"{name}-proxy-config", name=f"llm-{stack}-{plan.name}-proxy-config", image=args.proxy_image,
        entrypoints=["/bin/sh", "-ec"], command=[proxy_config_script(PROXY_UID)],
        user=f"0:{uid}", read_only=False, capabilities={"drops": ["ALL"]},
        security_opts=["no-new-privileges"], network_mode="none", volumes=proxy_mounts,
        uploads=[{"file": f"{PROXY_DIR}/nginx.conf", "content": conf, "owner": "0", "group": "0",
                  "permissions": "0444"},
                 {"file": KEYS_MAP, "content": args.keys_map, "owner": uid, "group": uid, "permissions": "0400"},
                 {"file": f"{TLS_DIR}/cert.pem", "content": args.cert_pem, "owner": uid, "group": uid,
                  "permissions": "0444"},
                 {"file": f"{TLS_DIR}/key.pem", "content": pulumi.Output.secret(args.key_pem),
                  "owner": uid, "group": uid, "permissions": "0400"}],
        attach=True, must_run=False, restart="no", labels=labels,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=pulls, delete_before_replace=True))
    proxy = docker.Container(
        f"{name}-proxy", name=f"llm-{stack}-{plan.name}-proxy", image=args.proxy_image,
        command=["nginx", "-c", f"{PROXY_DIR}/nginx.conf", "-g", "daemon off;"],
        network_mode=pulumi.Output.concat("container:", runtime.name),
        user=f"{uid}:{uid}", read_only=True, capabilities={"drops": ["ALL"]},
        security_opts=["no-new-privileges"], tmpfs={"/tmp": "rw,size=64m"},
        volumes=[{**m, "read_only": m["container_path"] == PROXY_DIR} for m in proxy_mounts],
        restart="unless-stopped", must_run=True,
        # a new config (helper replaced) or a new runtime (a new network namespace) replaces the proxy
        labels=labels + [{"label": "llm-platform.proxy-config", "value": config.id},
                         {"label": "llm-platform.runtime", "value": runtime.id}],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*pulls, runtime, config],
                                    delete_before_replace=True))
    return runtime, proxy
