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
The proxy's config, key map and TLS key pair are uploaded into a per-model volume (uploads to a
volume are allowed on a read-only root); client keys are generated (pulumi-random) and exported as
secrets. Images are pinned by digest, pulled straight from their registries (no ECR here).

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

import catalog
from settings import StackConfig
from sizing.planner import DeploymentPlan
from .proxy import AUDIT_LOG, KEYS_MAP, TARGET_PORT, TLS_DIR, render_nginx_conf
from .runtime import container_spec
from .userdata import PROXY_UID, client_hash

RUNTIME_UID = "1000:1000"
LOOPBACK = "127.0.0.1"


def pinned(key: str, override: Optional[str]) -> str:
    """<registry>/<repository>@sha256:<digest>, from the catalog (upstream registry) or the stack's override."""
    if override:
        return override
    img = catalog.load().images[key]
    host = {"docker-hub": "docker.io", "ecr-public": "public.ecr.aws"}[img["upstream"]]
    return f"{host}/{img['repository']}@{img['digest']}"


def verify_then(command: str, manifest: Optional[str], manifest_sha256: Optional[str]) -> str:
    """The runtime's entrypoint script: verify the staged weights, then exec the server."""
    if not manifest:
        return f"echo 'WARNING: no checksums configured: weights are NOT verified' >&2\nexec {command}\n"
    m = f"/model/{shlex.quote(manifest)}"
    return (f"echo {manifest_sha256}'  '{m} | sha256sum -c --strict --quiet"
            f" || {{ echo 'manifest digest differs from the pinned one' >&2; exit 1; }}\n"
            f"cd /model && sha256sum -c --strict --quiet {m}\n"
            f"exec {command}\n")


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
                command=[script], envs=[f"{k}={v}" for k, v in sorted({**spec.env, "HOME": "/tmp"}.items())],
                user=RUNTIME_UID, read_only=True, capabilities={"drops": ["ALL"]},
                security_opts=["no-new-privileges"], tmpfs={"/tmp": "rw,size=4g", "/root/.cache": "rw,size=8g"},
                shm_size=16384 if plan.runtime != "ollama" else None,
                gpus="all" if plan.gpu_count else None,
                volumes=[{"volume_name": model_vol.name, "container_path": "/model", "read_only": True}],
                networks_advanced=[{"name": network.name}],
                # the proxy lives in this network namespace: its port is the only one published, on loopback
                ports=[{"internal": TARGET_PORT, "external": port, "ip": LOOPBACK, "protocol": "tcp"}],
                restart="unless-stopped", must_run=True, labels=labels + [{"label": "llm-platform.model",
                                                                           "value": plan.model}],
                opts=pulumi.ResourceOptions(parent=parents[plan.name], depends_on=[remote]))
            conf = render_nginx_conf(plan, api.max_prompt_bytes, [])
            pref, premote = images["proxy"]
            uid = str(PROXY_UID)
            proxy = docker.Container(
                f"{plan.name}-proxy", name=f"llm-{stack}-{plan.name}-proxy", image=pref,
                command=["nginx", "-c", "/run/llm/nginx.conf", "-g", "daemon off;"],
                network_mode=pulumi.Output.concat("container:", runtime.name),
                user=f"{uid}:{uid}", read_only=True, capabilities={"drops": ["ALL"]},
                security_opts=["no-new-privileges"], tmpfs={"/tmp": "rw,size=64m"},
                volumes=[{"volume_name": proxy_vol.name, "container_path": "/run/llm"},
                         {"volume_name": audit.name, "container_path": AUDIT_LOG.rsplit("/", 1)[0]}],
                uploads=[{"file": "/run/llm/nginx.conf", "content": conf, "permissions": "0444"},
                         {"file": KEYS_MAP, "content": keys_map, "owner": uid, "permissions": "0400"},
                         {"file": f"{TLS_DIR}/cert.pem", "content": cert.cert_pem, "owner": uid, "permissions": "0444"},
                         {"file": f"{TLS_DIR}/key.pem", "content": tls_key.private_key_pem, "owner": uid,
                          "permissions": "0400"}],
                restart="unless-stopped", must_run=True, labels=labels,
                opts=pulumi.ResourceOptions(parent=parents[plan.name], depends_on=[premote, runtime]))
            self.containers[plan.name] = (runtime, proxy)
            self.endpoints[plan.name] = f"https://{LOOPBACK}:{port}/v1"
        pulumi.export("client_keys", {c: pulumi.Output.secret(k.result) for c, k in self.client_keys.items()})
        pulumi.export("proxy_certificate_pem", cert.cert_pem)
        self.register_outputs({"endpoints": self.endpoints})
