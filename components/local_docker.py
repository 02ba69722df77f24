"""LocalStack: `platform: docker`, the models on one workstation with Docker (pulumi-docker).

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
from typing import Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random
import pulumi_tls as tls

from llm_platform import catalog
from llm_platform.settings import StackConfig
from llm_platform.sizing.planner import DeploymentPlan
from llm_platform.serving.proxy import AUDIT_LOG, KEYS_MAP, TARGET_PORT, TLS_DIR, render_nginx_conf
from llm_platform.serving.runtime import container_spec
from llm_platform.serving.userdata import PROXY_UID, client_hash

RUNTIME_UID = "1000:1000"
LOOPBACK = "127.0.0.1"
CACHE = "/cache"            # the runtime's writable HOME and caches (a tmpfs owned by RUNTIME_UID)
CACHE_ENV = {"HOME": CACHE, "USER": "llm", "LOGNAME": "llm", "XDG_CACHE_HOME": CACHE,
             "HF_HOME": f"{CACHE}/huggingface", "VLLM_CACHE_ROOT": f"{CACHE}/vllm",
             "VLLM_CONFIG_ROOT": f"{CACHE}/vllm-config", "TRITON_CACHE_DIR": f"{CACHE}/triton",
             "TORCHINDUCTOR_CACHE_DIR": f"{CACHE}/inductor"}
PROXY_DIR = KEYS_MAP.rsplit("/", 1)[0]          # /run/llm: the per-model proxy volume
AUDIT_DIR = AUDIT_LOG.rsplit("/", 1)[0]         # /var/log/llm-proxy: the stack's audit volume


def pinned(key: str, override: Optional[str]) -> str:
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


def verify_then(command: str, manifest: Optional[str], manifest_sha256: Optional[str]) -> str:
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


class LocalStack(pulumi.ComponentResource):
    def __init__(self, name: str, *, config: StackConfig, plans: list[DeploymentPlan], parents: dict,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:local:LocalStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack = pulumi.get_stack()
        api, local = config.api, config.local
        overrides = {k: v for k, v in config.images.model_dump().items() if v and k != "docker_hub_credential_arn"}
        labels = [{"label": "llm-platform.stack", "value": stack}]
        specs = {m.name: m for m in config.models}

        self.client_keys = {c: random.RandomPassword(f"{name}-{c}-api-key", length=48, special=False, min_lower=4,
                                                     min_upper=4, min_numeric=4, opts=child) for c in api.clients}
        names = sorted(self.client_keys)
        keys_map = pulumi.Output.secret(pulumi.Output.all(*[self.client_keys[c].result for c in names]).apply(
            lambda vals: "".join(f'"Bearer {v}" "{client_hash(n)}";\n' for n, v in zip(names, vals))))
        tls_key = tls.PrivateKey(f"{name}-proxy", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        cert = tls.SelfSignedCert(f"{name}-proxy", private_key_pem=tls_key.private_key_pem,
                                  validity_period_hours=24 * 397, early_renewal_hours=24 * 30,
                                  subject={"common_name": "localhost", "organization": "llm-platform"},
                                  dns_names=["localhost"], ip_addresses=[LOOPBACK],
                                  allowed_uses=["digital_signature", "server_auth"], opts=child)
        self.ca_cert_pem = cert.cert_pem
        network = docker.Network(f"{name}-net", name=f"llm-{stack}", driver="bridge",
                                 options={"com.docker.network.bridge.enable_icc": "false"}, labels=labels, opts=child)
        audit = docker.Volume(f"{name}-audit", name=f"llm-{stack}-audit", labels=labels, opts=child)

        images = {}
        for key in sorted({p.runtime for p in plans} | {"proxy"}):
            ref = pinned(key, overrides.get(key))
            images[key] = (ref, docker.RemoteImage(f"{name}-{key}", name=ref, keep_locally=True, opts=child))

        self.endpoints, self.containers = {}, {}
        for i, plan in enumerate(plans):
            spec_cfg = specs[plan.name]
            port = local.port + i
            child = pulumi.ResourceOptions(parent=parents[plan.name])
            spec = container_spec(plan, api.max_tokens, host=LOOPBACK)
            model_vol = docker.Volume(f"{plan.name}-model", name=f"llm-{stack}-{plan.name}-model", labels=labels,
                                      opts=child)
            proxy_vol = docker.Volume(f"{plan.name}-proxy", name=f"llm-{stack}-{plan.name}-proxy", labels=labels,
                                      opts=child)
            server = ("ollama serve" if plan.runtime == "ollama"
                      else f"{'vllm serve' if plan.runtime == 'vllm' else 'text-generation-launcher'} "
                           + " ".join(shlex.quote(a) for a in spec.args))
            script = verify_then(server, spec_cfg.checksums.manifest if spec_cfg.checksums else None,
                                 spec_cfg.checksums.sha256 if spec_cfg.checksums else None)
            ref, remote = images[plan.runtime]
            runtime = docker.Container(
                plan.name, name=f"llm-{stack}-{plan.name}", image=ref, entrypoints=["/bin/sh", "-ec"],
                command=[script], envs=[f"{k}={v}" for k, v in sorted(runtime_env(plan.runtime, spec.env).items())],
                user=RUNTIME_UID, read_only=True, capabilities={"drops": ["ALL"]},
                security_opts=["no-new-privileges"],
                tmpfs={"/tmp": "rw,size=4g",
                       CACHE: f"rw,exec,nosuid,nodev,size=8g,uid={uid_of(RUNTIME_UID)},gid={gid_of(RUNTIME_UID)},"
                              "mode=0700"},
                shm_size=16384 if plan.runtime != "ollama" else None,
                gpus="all" if plan.gpu_count else None,
                volumes=[{"volume_name": model_vol.name, "container_path": "/model", "read_only": True}],
                networks_advanced=[{"name": network.name}],
                # the proxy lives in this network namespace: its port is the only one published, on loopback
                ports=[{"internal": TARGET_PORT, "external": port, "ip": LOOPBACK, "protocol": "tcp"}],
                restart="unless-stopped", must_run=True, labels=labels + [{"label": "llm-platform.model",
                                                                           "value": plan.model}],
                opts=pulumi.ResourceOptions(parent=parents[plan.name], depends_on=[remote],
                                            delete_before_replace=True))   # fixed name and port
            conf = render_nginx_conf(plan, api.max_prompt_bytes, [])
            pref, premote = images["proxy"]
            uid = str(PROXY_UID)
            proxy_mounts = [{"volume_name": proxy_vol.name, "container_path": PROXY_DIR},
                            {"volume_name": audit.name, "container_path": AUDIT_DIR}]
            # One shot, before the proxy: uploads need a writable root (see the module docstring).
            config = docker.Container(
                f"{plan.name}-proxy-config", name=f"llm-{stack}-{plan.name}-proxy-config", image=pref,
                entrypoints=["/bin/sh", "-ec"], command=[proxy_config_script(PROXY_UID)],
                user=f"0:{uid}", read_only=False, capabilities={"drops": ["ALL"]},
                security_opts=["no-new-privileges"], network_mode="none", volumes=proxy_mounts,
                uploads=[{"file": f"{PROXY_DIR}/nginx.conf", "content": conf, "owner": "0", "group": "0",
                          "permissions": "0444"},
                         {"file": KEYS_MAP, "content": keys_map, "owner": uid, "group": uid, "permissions": "0400"},
                         {"file": f"{TLS_DIR}/cert.pem", "content": cert.cert_pem, "owner": uid, "group": uid,
                          "permissions": "0444"},
                         {"file": f"{TLS_DIR}/key.pem", "content": pulumi.Output.secret(tls_key.private_key_pem),
                          "owner": uid, "group": uid, "permissions": "0400"}],
                attach=True, must_run=False, restart="no", labels=labels,
                opts=pulumi.ResourceOptions(parent=parents[plan.name], depends_on=[premote],
                                            delete_before_replace=True))
            proxy = docker.Container(
                f"{plan.name}-proxy", name=f"llm-{stack}-{plan.name}-proxy", image=pref,
                command=["nginx", "-c", f"{PROXY_DIR}/nginx.conf", "-g", "daemon off;"],
                network_mode=pulumi.Output.concat("container:", runtime.name),
                user=f"{uid}:{uid}", read_only=True, capabilities={"drops": ["ALL"]},
                security_opts=["no-new-privileges"], tmpfs={"/tmp": "rw,size=64m"},
                volumes=[{**m, "read_only": m["container_path"] == PROXY_DIR} for m in proxy_mounts],
                restart="unless-stopped", must_run=True,
                # a new config (helper replaced) or a new runtime (a new network namespace) replaces the proxy
                labels=labels + [{"label": "llm-platform.proxy-config", "value": config.id},
                                 {"label": "llm-platform.runtime", "value": runtime.id}],
                opts=pulumi.ResourceOptions(parent=parents[plan.name], depends_on=[premote, runtime, config],
                                            delete_before_replace=True))
            self.containers[plan.name] = (runtime, proxy)
            self.endpoints[plan.name] = f"https://{LOOPBACK}:{port}/v1"
        pulumi.export("client_keys", {c: pulumi.Output.secret(k.result) for c, k in self.client_keys.items()})
        pulumi.export("proxy_certificate_pem", cert.cert_pem)
        self.register_outputs({"endpoints": self.endpoints})
