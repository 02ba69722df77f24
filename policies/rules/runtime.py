"""The model server itself: behind the auth proxy, GPU memory headroom, no remote code, the production
runtime, GPUs in production. Recognised wherever the server is started (see policies/workloads.py)."""
from __future__ import annotations

import re
from collections.abc import Iterator

from ..core import (
    UNKNOWN,
    Context,
    Finding,
    Resource,
    as_list,
    as_num,
    get,
    glob_match,
    levels,
    opaque,
    rule,
    undetermined,
    violation,
)
from ..topology import SM_ENDPOINT_CONFIG, is_gpu_instance_type
from ..workloads import EC2_TYPES, WORKLOAD_TYPES, Workload, as_bool_text, exposure, workload
from .models import identity, registry_model

K8S_WORKLOADS = ("k8s:Deployment", "k8s:StatefulSet", "k8s:DaemonSet", "k8s:ReplicaSet", "k8s:Job", "k8s:CronJob",
                 "k8s:Pod", "k8s:ReplicationController")
TYPES = WORKLOAD_TYPES + K8S_WORKLOADS
AUTH_EVIDENCE = re.compile(r"auth_request|auth_basic|auth_jwt|\$http_authorization|\$http_x_api_key|\$http_api_key|"
                           r"ext_authz|jwt_authn|oauth2|basicauth|forward_auth|forwardauth|key-auth|api[_-]?keys?\b|"
                           r"\bBearer\b", re.I)


def _workload_or_note(r: Resource) -> tuple[Workload | None, list[Finding]]:
    w = workload(r)
    if w is None:
        return None, []
    if w.opaque:
        return None, [undetermined("the workload's commands are not known yet")]
    return w, []


@rule(
    name="runtime-behind-auth-proxy",
    description="vLLM, TGI, Ollama and llama.cpp servers are never reachable beyond loopback: on the host "
                "network or a pod/task address they bind 127.0.0.1 (vLLM and TGI bind every interface by "
                "default, the Ollama image sets 0.0.0.0), and no docker -p / hostPort / ECS port mapping "
                "publishes their port; an nginx proxy that forwards to them authenticates.",
    must="Teams MUST implement authentication for production LLM APIs (vLLM's --api-key leaves routes open, "
         "Ollama has none)",
    guide="Security Considerations > Authentication and Authorization; Do and Don't Examples (DON'T expose "
          "insecure APIs)",
    severity="critical",
    levels=levels(dev="mandatory"),
    remediation="Start the server with --host 127.0.0.1 (OLLAMA_HOST=127.0.0.1:11434), publish nothing, and "
                "put the TLS + API-key proxy (nginx auth_request / key map, envoy ext_authz) on the target port; "
                "in Kubernetes and ECS awsvpc run the proxy as a sidecar in the same pod/task.",
    types=TYPES,
)
def behind_auth_proxy(r: Resource, ctx: Context) -> Iterator[Finding]:
    w, notes = _workload_or_note(r)
    yield from notes
    if w is None:
        return
    for p in w.processes:
        e = exposure(p)
        if e is UNKNOWN:
            yield undetermined(f"{p.label}: the bind address or port is not known yet")
        elif e:
            yield violation(e)
    if not w.processes:
        return
    ports = {p.port() for p in w.processes}
    for conf in w.proxy_configs:
        targets = re.findall(r"(?:proxy_pass\s+https?://|\bserver\s+)(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)", conf)
        if any(int(t) in ports for t in targets) and not AUTH_EVIDENCE.search(conf):
            yield violation("the proxy forwards to the model server without checking credentials (no auth_request, "
                            "Authorization / API-key check): anyone who reaches the proxy uses the model")
            break


@rule(
    name="gpu-memory-utilization",
    description="vLLM's --gpu-memory-utilization (TGI's --cuda-memory-fraction) is at most 0.95, leaving "
                "headroom for CUDA graphs, NCCL buffers and fragmentation.",
    must="Appropriate hardware; DON'T over-allocate GPU memory (0.99: too high, leave headroom)",
    guide="vLLM: Production Deployment (gpu_memory_utilization range 0.7-0.95); Do and Don't Examples",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, an out-of-memory crash in dev costs a restart",
    remediation="Use 0.90 (the guide's recommendation) or at most 0.95; size for more memory instead.",
    types=TYPES,
    config={"max": {"type": "number", "default": 0.95, "description": "highest fraction allowed"}},
)
def gpu_memory_utilization(r: Resource, ctx: Context) -> Iterator[Finding]:
    w, notes = _workload_or_note(r)
    yield from notes
    if w is None:
        return
    mx = float(ctx.config.get("max", 0.95))
    for p in w.processes:
        if p.runtime == "vllm":
            v, name = p.flag("--gpu-memory-utilization"), "--gpu-memory-utilization"
        elif p.runtime == "tgi":
            v, name = p.flag("--cuda-memory-fraction") or p.envv("CUDA_MEMORY_FRACTION"), "--cuda-memory-fraction"
        else:
            continue
        if v is None:
            continue
        n = as_num(v) if v is not True else None
        if opaque(n) or n is None:
            yield undetermined(f"{p.label}: {name} {v!r} cannot be read before the instance starts")
        elif n > mx:
            yield violation(f"{p.label} runs with {name} {n:g} (> {mx:g}): no headroom for CUDA graphs and "
                            "fragmentation, out-of-memory under load")


@rule(
    name="no-trust-remote-code",
    description="No server runs with --trust-remote-code (TRUST_REMOTE_CODE) unless the model is one the "
                "registry marks as needing it or policy config `allowRemoteCodeFor` lists it after review.",
    must="Model security: the repository's Python code runs inside the server with its credentials",
    guide="Security Considerations > Model Security; vLLM: Production Deployment (Trust and Safety flags)",
    severity="high",
    levels=levels(dev="mandatory"),
    remediation="Drop --trust-remote-code, or review the model's code at the pinned revision and add the model "
                "to allowRemoteCodeFor.",
    types=TYPES,
    config={"allowRemoteCodeFor": {"type": "array", "items": {"type": "string"}, "default": [],
                                   "description": "model ids (glob patterns) reviewed to run with remote code"}},
)
def no_trust_remote_code(r: Resource, ctx: Context) -> Iterator[Finding]:
    w, notes = _workload_or_note(r)
    yield from notes
    if w is None:
        return
    allow = ctx.config.get("allowRemoteCodeFor") or []
    tags = r.tags()
    for p in w.processes:
        on = p.has("--trust-remote-code") or as_bool_text(p.envv("TRUST_REMOTE_CODE")) is True
        if not on:
            continue
        m = identity(p, {**tags, **{k: v for k, v in p.env.items()}})
        if opaque(m):
            yield undetermined(f"{p.label}: the model is not known yet")
            continue
        info = registry_model(m)
        if info is not None and info.trust_remote_code:
            continue
        if isinstance(m, str) and glob_match(m, allow):
            continue
        yield violation(f"{p.label} trusts remote code for {m or 'an unidentified model'!r}: the repository's "
                        "Python runs in the server; only registry models that need it or reviewed ones "
                        "(allowRemoteCodeFor) may")


@rule(
    name="prod-runtime-vllm-or-tgi",
    description="Production serves with vLLM (or TGI), not Ollama or the llama.cpp server.",
    must="Organizations MUST use vLLM for production workloads requiring high concurrency and throughput",
    guide="vLLM: Production Deployment; Conclusion (Ollama for development, vLLM for production)",
    severity="medium",
    levels=levels(dev="disabled", staging="advisory"),
    rationale="dev: not applied, Ollama is the guide's development runtime",
    remediation="Serve the model with vLLM (runtime: vllm) in prod; keep Ollama for dev stacks.",
    types=TYPES,
)
def prod_runtime(r: Resource, ctx: Context) -> Iterator[Finding]:
    w, notes = _workload_or_note(r)
    yield from notes
    if w is None:
        return
    for p in w.processes:
        if p.runtime in ("ollama", "llamacpp"):
            yield violation(f"{p.label} serves production traffic: use vLLM (or TGI) for concurrency and throughput")


@rule(
    name="no-cpu-inference-in-prod",
    description="Production inference runs on GPUs: GPU/accelerator instance types (EC2, SageMaker production "
                "variants), containers that are given GPUs (docker --gpus, Kubernetes GPU limits, ECS GPU "
                "requirements), no CUDA_VISIBLE_DEVICES=\"\" or --device cpu.",
    must="Teams MUST provision appropriate hardware; DON'T use CPU for production inference",
    guide="Hardware Requirements (CPU-Only Deployments); Do and Don't Examples",
    severity="medium",
    levels=levels(dev="disabled", staging="advisory"),
    rationale="dev: not applied, the guide allows CPU inference for development",
    remediation="Choose a GPU instance type (the planner picks the cheapest that fits), pass --gpus all to docker, "
                "set nvidia.com/gpu limits (Kubernetes) or a GPU resourceRequirement (ECS); SageMaker variants on "
                "ml.g5/ml.g6/ml.p4d/ml.p5 types.",
    types=TYPES + (SM_ENDPOINT_CONFIG,),
)
def no_cpu_inference(r: Resource, ctx: Context) -> Iterator[Finding]:
    if r.type == SM_ENDPOINT_CONFIG:
        yield from _sagemaker_cpu(r)
        return
    w, notes = _workload_or_note(r)
    yield from notes
    if w is None or not w.processes:
        return
    for t in w.instance_types:
        g = is_gpu_instance_type(t)
        if g is UNKNOWN:
            yield undetermined("the instance type is not known yet")
        elif g is False:
            yield violation(f"instance type {t} has no GPU: {', '.join(p.label for p in w.processes)} would run on CPU")
    for p in w.processes:
        if p.runtime == "vllm" and str(p.flag("--device") or "").lower() == "cpu":
            yield violation(f"{p.label} runs with --device cpu")
        elif p.gpu is False:
            how = {"k8s": "no GPU limit", "ecs": "no GPU resource requirement", "docker": "no gpus",
                   "ec2": "no GPU visible (docker without --gpus, or CUDA_VISIBLE_DEVICES empty)"}[w.platform]
            yield violation(f"{p.label} is given {how}: inference would run on CPU")


def _sagemaker_cpu(cfg: Resource) -> Iterator[Finding]:
    variants = cfg.get("productionVariants")
    if opaque(variants):
        yield undetermined("productionVariants is not known yet")
        return
    for v in [v for v in as_list(variants) if isinstance(v, dict)]:
        if get(v, "serverlessConfig") is not None:
            yield violation(f"production variant {get(v, 'variantName') or ''} is serverless: SageMaker serverless "
                            "inference has no GPUs")
            continue
        t = get(v, "instanceType")
        g = is_gpu_instance_type(t) if t is not None else None
        if g is UNKNOWN:
            yield undetermined("the variant's instance type is not known yet")
        elif g is False:
            yield violation(f"production variant {get(v, 'variantName') or ''} runs on {t}, which has no GPU: the "
                            "model would be served from CPU")


@rule(
    name="server-install-pinned",
    description="User data installs inference servers at an exact version and runs no remote script unverified: "
                "`pip install vllm==0.9.2` (not a bare `vllm` or `vllm>=`), and no `curl … | sh` installer (Ollama's "
                "install.sh included) without downloading it first and checking its SHA-256.",
    must="Model integrity and change management: what runs is what was reviewed (the server is part of the model "
         "supply chain)",
    guide="Security Considerations > Model Security; Data Privacy and Compliance (SOC2 change management)",
    severity="high",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, a dev box may follow the newest release on purpose",
    remediation="Pin the package (pip install 'vllm==0.9.2', better a pinned container image by digest); download "
                "installers to a file, verify `sha256sum -c` against a digest kept in the program, then run them "
                "(OLLAMA_VERSION pins Ollama's release); or bake the server into the AMI.",
    types=EC2_TYPES,
)
def server_install_pinned(r: Resource, ctx: Context) -> Iterator[Finding]:
    w, notes = _workload_or_note(r)
    yield from notes
    if w is None:
        return
    for where, what, problem in w.installs:
        if problem:
            yield violation(f"{where}: {what} {problem}")


RULES = [behind_auth_proxy, gpu_memory_utilization, no_trust_remote_code, prod_runtime, no_cpu_inference,
         server_install_pinned]
