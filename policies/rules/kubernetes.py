"""Kubernetes and container hardening: private EKS endpoint, encrypted secrets, non-root, no privilege
escalation, read-only root filesystem, pinned images, GPU limits, probes."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

from ..core import (
    JSON,
    UNKNOWN,
    Context,
    Finding,
    Resource,
    ResourceCheck,
    Sentinel,
    Stack,
    Tristate,
    as_bool,
    as_list,
    as_num,
    get,
    k8s_kind,
    levels,
    opaque,
    rule,
    undetermined,
    violation,
)
from ..topology import is_gpu_instance_type
from ..workloads import GPU_RESOURCE_KEYS, WORKLOAD_TYPES, Process, is_noop, pod_spec, workload
from .runtime import K8S_WORKLOADS

EKS = "aws:eks/cluster:Cluster"
LONG_RUNNING = ("k8s:Deployment", "k8s:StatefulSet", "k8s:DaemonSet", "k8s:ReplicaSet", "k8s:Pod",
                "k8s:ReplicationController")


@rule(
    name="eks-private-endpoint",
    description="EKS clusters expose their API endpoint privately only (vpcConfig.endpointPublicAccess false, "
                "endpointPrivateAccess true).",
    must="Deploy on a private network/VPC, no direct internet exposure",
    guide="Security Considerations > Network Security",
    severity="critical",
    levels=levels(dev="mandatory"),
    remediation="Set vpcConfig: {endpointPrivateAccess: true, endpointPublicAccess: false}; reach the API "
                "through the VPN or a bastion-less SSM port forward.",
    types=(EKS,),
)
def eks_private_endpoint(r: Resource, ctx: Context) -> Iterator[Finding]:
    vpc = r.get("vpcConfig")
    if opaque(vpc):
        yield undetermined("vpcConfig is not known yet")
        return
    pub = as_bool(get(vpc, "endpointPublicAccess"))
    if opaque(pub):
        yield undetermined("endpointPublicAccess is not known yet")
    elif pub is not False:
        yield violation("the cluster's API endpoint is public (endpointPublicAccess defaults to true)")
    priv = as_bool(get(vpc, "endpointPrivateAccess"))
    if priv is not True and not opaque(priv) and pub is False:
        yield violation("endpointPrivateAccess is not true: with the public endpoint off, nodes cannot reach the API")


@rule(
    name="eks-secrets-encrypted",
    description="EKS clusters envelope-encrypt Kubernetes secrets with a KMS key (encryptionConfig with "
                "resources ['secrets']).",
    must="Encryption at rest; proper secrets management (Kubernetes secrets)",
    guide="Security Considerations > Secrets Management",
    severity="high",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, dev clusters hold no production API keys",
    remediation="encryptionConfig: {provider: {keyArn: key.arn}, resources: ['secrets']}.",
    types=(EKS,),
)
def eks_secrets_encrypted(r: Resource, ctx: Context) -> Iterator[Finding]:
    enc = r.get("encryptionConfig")
    if opaque(enc):
        yield undetermined("encryptionConfig is not known yet")
        return
    for e in as_list(enc):
        if isinstance(e, dict) and "secrets" in as_list(get(e, "resources")) and get(e, "provider.keyArn") is not None:
            return
    yield violation("Kubernetes secrets are not envelope-encrypted with a KMS key")


def _pod_containers(r: Resource) -> tuple[Any, list[tuple[str, JSON]]]:
    spec = pod_spec(r)
    if opaque(spec):
        return spec, []
    if not isinstance(spec, dict):
        return None, []
    out: list[tuple[str, JSON]] = []
    for group in ("initContainers", "containers"):
        for c in as_list(spec.get(group)):
            if isinstance(c, dict):
                out.append((group, c))
    return spec, out


def _sec(spec: Any, c: JSON, key: str) -> Any:
    v = get(c, "securityContext." + key)
    if v is None and key in ("runAsNonRoot", "runAsUser"):
        v = get(spec, "securityContext." + key)
    return v


# A container check: None when the container is fine, UNKNOWN when it cannot tell, else the problem
ContainerCheck: TypeAlias = Callable[[Any, JSON], "str | Sentinel | None"]


def _k8s_container_rule(check: ContainerCheck) -> ResourceCheck:
    def run(r: Resource, ctx: Context) -> Iterator[Finding]:
        spec, containers = _pod_containers(r)
        if opaque(spec):
            yield undetermined("the pod spec is not known yet")
            return
        for _group, c in containers:
            msg = check(spec, c)
            if msg is UNKNOWN:
                yield undetermined(f"container {c.get('name')!r}: securityContext is not known yet")
            elif msg:
                yield violation(f"container {c.get('name')!r}: {msg}")
    return run


def _non_root(spec: Any, c: JSON) -> str | Sentinel | None:
    nr, uid = as_bool(_sec(spec, c, "runAsNonRoot")), as_num(_sec(spec, c, "runAsUser"))
    if opaque(nr) or opaque(uid):
        return UNKNOWN
    if uid == 0:
        return "runs as root (runAsUser 0)"
    if nr is True or (isinstance(uid, float) and uid > 0):
        return None
    return "may run as root: set runAsNonRoot: true (and a non-zero runAsUser)"


def _no_escalation(spec: Any, c: JSON) -> str | Sentinel | None:
    priv = as_bool(get(c, "securityContext.privileged"))
    ape = as_bool(get(c, "securityContext.allowPrivilegeEscalation"))
    if opaque(priv) or opaque(ape):
        return UNKNOWN
    if priv is True:
        return "runs privileged"
    if ape is not False:
        return "allowPrivilegeEscalation is not false (it defaults to true)"
    return None


def _ro_root(spec: Any, c: JSON) -> str | Sentinel | None:
    ro = as_bool(get(c, "securityContext.readOnlyRootFilesystem"))
    if opaque(ro):
        return UNKNOWN
    return None if ro is True else "the root filesystem is writable: set readOnlyRootFilesystem: true and mount " \
                                   "emptyDir volumes for caches"


k8s_non_root = _k8s_container_rule(_non_root)
k8s_no_escalation = _k8s_container_rule(_no_escalation)
k8s_ro_root = _k8s_container_rule(_ro_root)

K8S_HARDENING = dict(severity="high", levels=levels(dev="advisory"),
                     rationale="dev: advisory, local images are often built to run as root",
                     guide="Security Considerations > Network Security (enterprise: zero-trust); Secrets Management",
                     types=K8S_WORKLOADS)

RULE_NON_ROOT = rule(
    name="k8s-run-as-non-root",
    description="Kubernetes containers run as a non-root user (runAsNonRoot true or runAsUser > 0, pod or "
                "container level).",
    must="Container hardening: a compromised model server must not be root in its container",
    remediation="securityContext: {runAsNonRoot: true, runAsUser: 1000}; the vLLM image runs as any uid with "
                "HOME and the cache on writable volumes.",
    **K8S_HARDENING)(k8s_non_root)
RULE_NO_ESCALATION = rule(
    name="k8s-no-privilege-escalation",
    description="Kubernetes containers are not privileged and set allowPrivilegeEscalation: false.",
    must="Container hardening: no privilege escalation",
    remediation="securityContext: {allowPrivilegeEscalation: false, privileged: false, capabilities: {drop: [ALL]}}; "
                "GPUs come through the device plugin, not privileged mode.",
    **K8S_HARDENING)(k8s_no_escalation)
RULE_RO_ROOT = rule(
    name="k8s-read-only-root-filesystem",
    description="Kubernetes containers mount their root filesystem read-only.",
    must="Container hardening: read-only root filesystem",
    remediation="securityContext: {readOnlyRootFilesystem: true}, with emptyDir volumes for /tmp, ~/.cache and "
                "the model directory.",
    **{**K8S_HARDENING, "severity": "medium"})(k8s_ro_root)


# tags that name a branch, a channel or a platform, not a release: they move with every push
MOVING_TAG = re.compile(r"^(latest|main|master|nightly|stable|edge|dev|develop|head|canary|beta|alpha|rc|release|"
                        r"current|cuda|cpu|gpu|rocm|arm64|amd64|aarch64|x86_64|(latest|main|nightly)[-_.][\w.-]+|"
                        r"[\w.-]+[-_.](latest|nightly|main|dev))$", re.I)


def _image_problem(image: Any, prod: bool) -> str | Sentinel | None:
    if opaque(image):
        return UNKNOWN
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    if "@sha256:" in image or re.fullmatch(r"sha256:[0-9a-f]{64}", image):
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (pulls :latest)"
    tag = last.split(":", 1)[1]
    if MOVING_TAG.match(tag):
        return f"image {image!r} uses the mutable tag {tag!r}"
    if prod:
        return (f"image {image!r} is pinned by tag {tag!r} only: tags can be re-pushed; in prod pull by digest "
                "(@sha256:...) so what runs is what was reviewed")
    return None


@rule(
    name="container-image-pinned",
    description="Containers run pinned images: never untagged or a mutable tag (latest, main, arm64, nightly, ...); "
                "in prod pinned by digest (@sha256:...) — Kubernetes, ECS task definitions, SageMaker models, docker "
                "run / compose in user data, docker containers.",
    must="Model integrity and change management: what runs is what was reviewed",
    guide="Security Considerations > Model Security; Data Privacy and Compliance (SOC2 change management)",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, engineers try new runtime releases in dev",
    remediation="Pin the image to a release tag (vllm/vllm-openai:v0.9.2) or better a digest (@sha256:...), "
                "mirrored into ECR for air-gapped stacks.",
    types=WORKLOAD_TYPES + K8S_WORKLOADS,
)
def image_pinned(r: Resource, ctx: Context) -> Iterator[Finding]:
    w = workload(r)
    if w is None:
        return
    if w.opaque:
        yield undetermined("the workload is not known yet")
        return
    idle = {c.where for c in w.containers if is_noop(c.argv)}
    for where, image in w.images:
        if where in idle:
            continue        # runs nothing from the image (e.g. `true` to fill a registry pull-through cache)
        msg = _image_problem(image, ctx.prod)
        if msg is UNKNOWN:
            yield undetermined(f"{where}: the image is not known yet")
        elif msg:
            yield violation(f"{where}: {msg}")


def _gpu_limit(c: JSON) -> Any:
    limits = get(c, "resources.limits")
    if opaque(limits):
        return UNKNOWN
    if isinstance(limits, dict):
        for k, v in limits.items():
            if any(k.startswith(g) for g in GPU_RESOURCE_KEYS):
                return v
    return None


CPU_IMAGE = re.compile(r"cpu|arm64|aarch64|graviton|neuron", re.I)
# node labels that pin a pod to an instance family / type (EKS, Karpenter)
_FAMILY_LABELS = ("karpenter.k8s.aws/instance-family", "node.kubernetes.io/instance-type",
                  "beta.kubernetes.io/instance-type", "karpenter.k8s.aws/instance-category",
                  "eks.amazonaws.com/instance-type")


def _cpu_build(p: Process) -> bool:
    """A CPU build of the server: vLLM's CPU images (vllm-cpu-release-repo, ...:cpu / :arm64 builds),
    --device cpu, or vLLM's CPU backend settings (VLLM_CPU_KVCACHE_SPACE, VLLM_TARGET_DEVICE=cpu)."""
    if str(p.flag("--device") or "").lower() == "cpu":
        return True
    if any(str(k).startswith("VLLM_CPU_") for k in p.env) or str(p.env.get("VLLM_TARGET_DEVICE", "")).lower() == "cpu":
        return True
    return isinstance(p.image, str) and bool(CPU_IMAGE.search(p.image.rsplit("/", 1)[-1]))


def _cpu_nodes(spec: JSON) -> bool:
    """The node selector / required affinity names only CPU instance families or types."""
    values = []
    sel = spec.get("nodeSelector") or {}
    if isinstance(sel, dict):
        values += [(k, v) for k, v in sel.items() if k in _FAMILY_LABELS and isinstance(v, str)]
    for term in as_list(get(spec, "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
                                  "nodeSelectorTerms")):
        for ex in as_list(get(term, "matchExpressions")):
            if isinstance(ex, dict) and ex.get("key") in _FAMILY_LABELS and ex.get("operator") == "In":
                values += [(ex["key"], v) for v in as_list(ex.get("values")) if isinstance(v, str)]
    if not values:
        return False
    for key, v in values:
        if key.endswith("instance-category"):
            if v.lower() in ("g", "p", "inf", "trn", "dl"):
                return False
            continue
        name = v if "." in v else v + ".xlarge"
        if is_gpu_instance_type(name) is not False:
            return False
    return True


@rule(
    name="k8s-gpu-limits",
    description="Kubernetes containers that need GPUs (vLLM/TGI servers, containers requesting GPUs, pods "
                "selecting GPU nodes) set a GPU limit (nvidia.com/gpu, ...). CPU builds of the servers (vLLM's CPU "
                "images, --device cpu, VLLM_CPU_* settings) and pods pinned to CPU instance families need none.",
    must="Provision appropriate hardware (the scheduler places and isolates GPUs by their limits)",
    guide="Hardware Requirements; vLLM: Production Deployment",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, a dev cluster may time-share one GPU",
    remediation="resources: {limits: {nvidia.com/gpu: <tensor-parallel size>}} on the server container.",
    types=K8S_WORKLOADS,
)
def k8s_gpu_limits(r: Resource, ctx: Context) -> Iterator[Finding]:
    spec, containers = _pod_containers(r)
    if opaque(spec):
        yield undetermined("the pod spec is not known yet")
        return
    if not isinstance(spec, dict):
        return
    w = workload(r)
    if _cpu_nodes(spec):
        return          # the pod is placed on CPU-only nodes: no GPU to limit (no-cpu-inference-in-prod judges it)
    serving = {p.container for p in (w.processes if w else []) if p.runtime in ("vllm", "tgi")
               and not _cpu_build(p)}
    gpu_nodes = any("gpu" in str(k).lower() or "nvidia" in str(k).lower() for k in (spec.get("nodeSelector") or {})) \
        or any("nvidia.com/gpu" in str(get(t, "key", "")) for t in as_list(spec.get("tolerations")))
    for group, c in containers:
        if group != "containers":
            continue
        requests = get(c, "resources.requests") or {}
        wants = c.get("name") in serving or (isinstance(requests, dict) and
                                             any(any(k.startswith(g) for g in GPU_RESOURCE_KEYS) for k in requests))
        if not wants and not (gpu_nodes and len([x for g2, x in containers if g2 == "containers"]) == 1):
            continue
        lim = _gpu_limit(c)
        if lim is UNKNOWN:
            yield undetermined(f"container {c.get('name')!r}: resources.limits is not known yet")
        elif lim is None or (isinstance(as_num(lim), float) and as_num(lim) <= 0):
            yield violation(f"container {c.get('name')!r} needs GPUs but sets no GPU limit: the scheduler will not "
                            "give it one")


@rule(
    name="k8s-probes",
    description="Long-running Kubernetes containers have readiness and liveness probes (a server loading a "
                "70B model is not ready for minutes; a wedged one must be restarted).",
    must="Monitoring and observability (health checks)",
    guide="Monitoring and Observability; vLLM: Production Deployment (healthcheck /health)",
    severity="low",
    levels=levels(dev="advisory"),
    rationale="dev: advisory",
    remediation="readinessProbe and livenessProbe (httpGet /health through the proxy port, or exec), with a "
                "startupProbe long enough for model loading.",
    types=LONG_RUNNING,
)
def k8s_probes(r: Resource, ctx: Context) -> Iterator[Finding]:
    spec, containers = _pod_containers(r)
    if opaque(spec):
        yield undetermined("the pod spec is not known yet")
        return
    for group, c in containers:
        if group != "containers" or get(c, "restartPolicy") == "Always":
            continue
        missing = [p for p in ("readinessProbe", "livenessProbe") if get(c, p) is None]
        if missing:
            yield violation(f"container {c.get('name')!r} has no {' or '.join(missing)}")


NETWORK_POLICY = "k8s:NetworkPolicy"


def _namespace(r: Resource) -> Any:
    ns = r.get("metadata.namespace")
    return "default" if ns is None or ns == "" else ns


def _pod_labels(r: Resource) -> Any:
    kind = k8s_kind(r.type)
    if kind == "Pod":
        return r.get("metadata.labels")
    if kind == "CronJob":
        return r.get("spec.jobTemplate.spec.template.metadata.labels")
    return r.get("spec.template.metadata.labels")


def _selects(selector: Any, labels: Any) -> Tristate:
    """True / False / UNKNOWN: a LabelSelector (matchLabels, matchExpressions) selects pods with `labels`."""
    if opaque(selector) or opaque(labels):
        return UNKNOWN
    if selector is None:
        return False
    labels = labels if isinstance(labels, dict) else {}
    if not isinstance(selector, dict):
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if opaque(v):
            return UNKNOWN
        if labels.get(k) != v:
            return False
    for ex in as_list(selector.get("matchExpressions")):
        if not isinstance(ex, dict):
            continue
        key, op, vals = ex.get("key"), str(ex.get("operator", "")), as_list(ex.get("values"))
        present = key in labels
        if op == "In" and not (present and labels[key] in vals):
            return False
        if op == "NotIn" and present and labels[key] in vals:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _isolates_ingress(policy: Resource) -> bool:
    if k8s_kind(policy.type) == "CiliumNetworkPolicy":
        return policy.get("spec.ingress") is not None or policy.get("spec.ingressDeny") is not None
    types = policy.get("spec.policyTypes")
    if opaque(types):
        return True
    if types is None:
        return True         # Ingress is always implied when policyTypes is unset
    return "Ingress" in [str(t) for t in as_list(types)]


@rule(
    name="k8s-network-policy",
    description="Every Kubernetes workload that serves a model is selected by a NetworkPolicy with Ingress in its "
                "policyTypes (or a CiliumNetworkPolicy with ingress rules, or a Calico policy), in its namespace: "
                "without one every pod in the cluster (and anything routed to the nodes) reaches the model server.",
    must="Firewall rules limiting access; no direct internet exposure (network isolation of the model servers)",
    guide="Security Considerations > Network Security (enterprise: zero-trust)",
    severity="high",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, a dev cluster may not run a CNI that enforces NetworkPolicy",
    remediation="Add a NetworkPolicy whose podSelector matches the model pods' labels, policyTypes [Ingress], that "
                "admits only the API port from the load balancer's / clients' CIDRs and the metrics port from the "
                "monitoring namespace (and enable enforcement: VPC CNI enableNetworkPolicy, Calico or Cilium).",
    kind="stack",
)
def k8s_network_policy(stack: Stack, ctx: Context) -> Iterator[Finding]:
    policies = stack.where(lambda x: k8s_kind(x.type) in ("NetworkPolicy", "CiliumNetworkPolicy"))
    for r in stack.resources:
        if k8s_kind(r.type) not in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod",
                                    "ReplicationController", "Job", "CronJob", "LeaderWorkerSet"):
            continue
        w = workload(r)
        if w is None or not w.processes:
            continue
        ns, labels = _namespace(r), _pod_labels(r)
        verdicts: list[Tristate] = []
        for pol in policies:
            pns = _namespace(pol)
            if opaque(pns) or opaque(ns):
                verdicts.append(UNKNOWN)
                continue
            if pns != ns or not _isolates_ingress(pol):
                continue
            if k8s_kind(pol.type) == "CiliumNetworkPolicy":
                verdicts.append(_selects(pol.get("spec.endpointSelector") or {}, labels))
            elif str(pol.get("apiVersion") or pol.type).startswith(("projectcalico.org", "kubernetes:projectcalico")):
                verdicts.append(True)   # Calico selects by expression strings; its presence is the evidence
            else:
                verdicts.append(_selects(pol.get("spec.podSelector") or {}, labels))
        if True in verdicts:
            continue
        if UNKNOWN in verdicts:
            yield undetermined("a NetworkPolicy's namespace or selector, or the pods' labels, are not known yet", r)
        else:
            yield violation(f"no NetworkPolicy (Ingress) in namespace {ns!r} selects the pods of this workload: "
                            f"{', '.join(p.label for p in w.processes)} is reachable from every pod in the cluster", r)


RULES = [eks_private_endpoint, eks_secrets_encrypted, RULE_NON_ROOT, RULE_NO_ESCALATION, RULE_RO_ROOT,
         image_pinned, k8s_gpu_limits, k8s_probes, k8s_network_policy]
