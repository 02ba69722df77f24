"""KubernetesServing: one model deployment on EKS, every object built from its DeploymentPlan.

Per deployment, in its own namespace (Pod Security `restricted`, enforced):
- the pod: an init container that downloads models/<name>/<revision>/ from the model store (EKS Pod
  Identity, read-only to that prefix), checks the manifest's own SHA-256 against the pinned digest,
  runs the one verification script (llm_platform/serving/verify.py) (fail closed: the server never
  starts); the runtime bound to 127.0.0.1 with the plan's flags (llm_platform/serving/runtime.py) and
  `nvidia.com/gpu` = the GPUs one node of a replica uses; the TLS + bearer-key nginx proxy
  (llm_platform/serving/proxy.py) as a sidecar on :8443 (API, /health), :9443 (/metrics for monitoring_cidrs) and
  :9444 (/metrics for the monitoring namespace); CPU and memory requests from the plan (llm_platform/sizing/host.py:
  the weights a node loads through host memory, per-GPU worker overheads). Non-root, no privilege
  escalation, all capabilities dropped, RuntimeDefault seccomp, read-only root filesystems with
  emptyDirs for the model cache, compile caches, /tmp and /dev/shm; no service-account token.
  Startup, readiness and liveness probes go through the proxy's /health; the startup probe allows the
  plan's load time.
- one replica spanning nodes (PP > 1): a LeaderWorkerSet of PP pods per replica running vLLM's native
  multi-node launch (--nnodes/--node-rank/--master-addr, workers --headless; the stock image has no
  Ray), flags checked against the pinned vLLM's parser in tests; otherwise a Deployment.
- client keys as a Secret (the proxy's key map, built from the Secrets Manager values), the proxy's
  TLS key pair as a Secret; a Service of type LoadBalancer that the AWS Load Balancer Controller
  turns into an internal NLB with a TLS listener (ACM certificate, TLS 1.3/1.2 policy) re-encrypting
  to the proxy, source ranges = allowed client CIDRs; a metrics Service for the ServiceMonitor.
- a NetworkPolicy (default deny; API port from the allowed CIDRs and the VPC, where the NLB's health
  checks come from; metrics ports from monitoring_cidrs / the monitoring namespace; out: DNS to kube-dns,
  HTTPS to the VPC's CIDR only (interface endpoints, S3's included: the model fetch uses the S3 interface
  endpoint) and the Pod Identity agent, no internet; pod-to-pod only inside a multi-node group), a
  PodDisruptionBudget, a KEDA ScaledObject
  on vllm:num_requests_waiting bounded by the plan's replicas, a ServiceMonitor and a PrometheusRule.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from llm_platform.serving.proxy import (
    AUDIT_LOG,
    CLUSTER_METRICS_PORT,
    KEYS_MAP,
    METRICS_PORT,
    TARGET_PORT,
    TLS_DIR,
    key_map_entry,
    render_nginx_conf,
)
from llm_platform.serving.runtime import container_spec, image_ref, vllm_multinode_args
from llm_platform.serving.telemetry import QUEUE_METRIC
from llm_platform.serving.userdata import client_hash
from llm_platform.serving.verify import render_verify_function
from llm_platform.sizing.fallbacks import replicas_max_any_type
from llm_platform.sizing.host import host_resources
from llm_platform.sizing.planner import DeploymentPlan

from .eks import NODE_POOL_LABEL, POD_IDENTITY_TRUST
from .karpenter import DEPLOYMENT_LABEL
from .model_store import model_prefix, read_statements
from .node_cache import CACHE_MOUNT, NodeModelCache, cached_fetch_script

RUNTIME_UID = 1000
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
CAPACITY_REASON_ANNOTATION = "llm-platform.io/capacity-single-type"   # read by the policy pack
PROXY_UID = 101
NODE_RANK_ENV = "LLM_NODE_RANK"                           # a worker's --node-rank, from its LWS label
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
PSS_LABELS = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "audit", "warn")}
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
POD_IDENTITY_AGENT = "169.254.170.23/32"


def fetch_script() -> str:
    """The init container's script: download, then the one verification script (serving/verify.py) that EC2 and
    Docker run too; the server never starts on weights that fail it."""
    return render_verify_function() + """set -eu
dest=/model
manifest=/tmp/SHA256SUMS
if [ -n "$MANIFEST" ]; then
  aws s3 cp --only-show-errors "s3://$MODEL_BUCKET/$MODEL_PREFIX/$MANIFEST" "$manifest"
  llm_verify_model - "$manifest" "$MANIFEST_SHA256"
fi
aws s3 sync --only-show-errors --no-progress --exact-timestamps --exclude "$MANIFEST" \\
  "s3://$MODEL_BUCKET/$MODEL_PREFIX/" "$dest"
if [ -n "$MANIFEST" ]; then
  llm_verify_model "$dest" "$manifest" "$MANIFEST_SHA256"
else
  echo "WARNING: no checksums configured for $LLM_NAME: weights are NOT verified (allowed outside prod)" >&2
fi
chmod -R a-w "$dest"
"""


def hardened(uid: int) -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True, run_as_user=uid, run_as_group=RUNTIME_UID, allow_privilege_escalation=False,
        privileged=False, read_only_root_filesystem=True, capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"))


@dataclass(frozen=True)
class KubernetesServingArgs:
    plan: DeploymentPlan
    stack: str
    environment: str
    provider: k8s.Provider                             # the cluster's (GpuCluster.provider)
    cluster_name: pulumi.Input[str]
    registry: pulumi.Input[str]                        # <account>.dkr.ecr.<region>.amazonaws.com (pull-through cache)
    region: pulumi.Input[str]
    model_bucket_name: pulumi.Input[str]
    model_bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    client_secret_arns: Mapping[str, pulumi.Input[str]]
    certificate_arn: pulumi.Input[str]                 # the NLB's TLS listener
    vpc_cidr: str
    allowed_client_cidrs: Sequence[str]
    manifest: str | None = None
    manifest_sha256: str | None = None
    provenance: Mapping[str, str] | None = None
    monitoring_cidrs: Sequence[str] = ()
    monitoring_namespace: str = "monitoring"           # where Prometheus scrapes from
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    queue_target: int = 4                              # waiting requests per replica before KEDA adds one
    max_prompt_bytes: int = 131072
    max_tokens: int = 4096
    domain: str = "llm.internal"
    latency_p99_seconds: float = 30.0
    gpu_memory_percent: float = 95.0
    image_overrides: Mapping[str, str] = field(default_factory=dict)
    after: Sequence[pulumi.Resource] = ()              # cluster add-ons the namespace waits for (GpuCluster.addons)
    node_cache: NodeModelCache | None = None           # the node-local verified model cache (GpuCluster.node_cache)
    s3_endpoint_url: pulumi.Input[str] | None = None   # the S3 interface endpoint: the model fetch stays in the VPC


class KubernetesServing(pulumi.ComponentResource):
    """Outputs: namespace, hostname (the internal NLB's)."""

    namespace: pulumi.Output[str]
    hostname: pulumi.Output[str | None]

    def __init__(self, name: str, args: KubernetesServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:eks:KubernetesServing", name, None, opts)
        plan, stack, environment, provider = args.plan, args.stack, args.environment, args.provider
        cluster_name, registry, region, kms_key_arn = args.cluster_name, args.registry, args.region, args.kms_key_arn
        manifest, manifest_sha256, provenance = args.manifest, args.manifest_sha256, args.provenance
        client_secrets, certificate_arn, vpc_cidr = dict(args.client_secret_arns), args.certificate_arn, args.vpc_cidr
        allowed_client_cidrs, monitoring_cidrs = list(args.allowed_client_cidrs), list(args.monitoring_cidrs)
        max_prompt_bytes, max_tokens, domain = args.max_prompt_bytes, args.max_tokens, args.domain
        latency_p99_seconds, gpu_memory_percent = args.latency_p99_seconds, args.gpu_memory_percent
        image_overrides = args.image_overrides
        child = pulumi.ResourceOptions(parent=self)
        kopts = pulumi.ResourceOptions(parent=self, provider=provider)
        tags = {"llm-platform:stack": stack, "llm-platform:deployment": plan.name}
        ns_name = f"llm-{plan.name}"
        labels = {"app.kubernetes.io/name": plan.name, "app.kubernetes.io/part-of": "llm-platform",
                  "llm-platform/deployment": plan.name}
        multi_node = plan.nodes_per_replica > 1
        # what the workload serves, for people and for the policy pack (the EC2 fleet's tags, as annotations)
        identity = {"llm-platform.io/model": plan.model, "llm-platform.io/revision": plan.revision or "unpinned",
                    "llm-platform.io/precision": plan.precision, "llm-platform.io/runtime": plan.runtime,
                    "llm-platform.io/instance-type": plan.instance_type,
                    "llm-platform.io/tensor-parallel": str(plan.tensor_parallel_size),
                    "llm-platform.io/pipeline-parallel": str(plan.pipeline_parallel_size),
                    "llm-platform.io/checksum": manifest_sha256 or "none",
                    **{f"llm-platform.io/provenance-{k.replace('_', '-')}": v for k, v in (provenance or {}).items()}}
        if not plan.fallbacks:     # the policy pack's prod-gpu-capacity-fallback reads why there is one type only
            identity[CAPACITY_REASON_ANNOTATION] = plan.fallbacks_reason or "no checked fallback type"

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=ns_name, labels={**PSS_LABELS, **labels}),
            opts=pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(depends_on=list(args.after))))
        ns = namespace.metadata.name
        meta = lambda n, extra=None, ann=None: k8s.meta.v1.ObjectMetaArgs(  # noqa: E731
            name=n, namespace=ns, labels={**labels, **(extra or {})}, annotations=ann)

        # --- identity: the pod reads only its model's prefix (EKS Pod Identity)
        prefix = model_prefix(plan.name, plan.revision)
        role = aws.iam.Role(f"{name}-pod", assume_role_policy=POD_IDENTITY_TRUST, tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-pod", role=role.id, policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17", "Statement": [
                *read_statements(args.model_bucket_arn, plan.name, plan.revision),
                {"Sid": "DecryptThroughS3", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": kms_key_arn,
                 "Condition": {"StringEquals": {"kms:ViaService": pulumi.Output.concat("s3.", region,
                                                                                        ".amazonaws.com")}}}]}),
            opts=child)
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta(plan.name), automount_service_account_token=False,
                                        opts=kopts)
        # pods get credentials only if the association exists when they are admitted: workloads wait for it
        association = aws.eks.PodIdentityAssociation(f"{name}-pod", cluster_name=cluster_name, namespace=ns,
                                                     service_account=sa.metadata.name, role_arn=role.arn, tags=tags,
                                                     opts=child)

        # --- secrets: client keys (the proxy's key map) and the proxy's TLS key pair
        keys = [aws.secretsmanager.get_secret_version_output(secret_id=arn,
                                                             opts=pulumi.InvokeOutputOptions(parent=self))
                .secret_string for _, arn in sorted(client_secrets.items())]
        names = sorted(client_secrets)
        keys_map = pulumi.Output.secret(pulumi.Output.all(*keys).apply(lambda vals: "".join(
            key_map_entry(v, client_hash(n)) for n, v in zip(names, vals, strict=True))))
        k8s.core.v1.Secret(f"{name}-client-keys", metadata=meta("client-keys"), type="Opaque",
                                              immutable=False, string_data={"keys.map": keys_map}, opts=kopts)
        tls_key = tls.PrivateKey(f"{name}-proxy", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        svc_dns = [f"{plan.name}.{domain}", f"{plan.name}.{ns_name}.svc", f"{plan.name}-metrics.{ns_name}.svc"]
        tls_cert = tls.SelfSignedCert(f"{name}-proxy", private_key_pem=tls_key.private_key_pem,
                                      validity_period_hours=24 * 397, early_renewal_hours=24 * 30,
                                      subject={"common_name": svc_dns[0], "organization": "llm-platform"},
                                      dns_names=svc_dns, allowed_uses=["digital_signature", "server_auth"],
                                      opts=child)
        k8s.core.v1.Secret(f"{name}-proxy-tls", metadata=meta("proxy-tls"), type="kubernetes.io/tls",
                           string_data={"tls.crt": tls_cert.cert_pem, "tls.key": tls_key.private_key_pem}, opts=kopts)
        # the audit line goes to the container log (collected by the cluster's log agent), never a prompt
        # /metrics: monitoring_cidrs on METRICS_PORT; the monitoring namespace (NetworkPolicy) on CLUSTER_METRICS_PORT
        conf = render_nginx_conf(plan, max_prompt_bytes, monitoring_cidrs, cluster_metrics=True).replace(
            f"access_log {AUDIT_LOG}", "access_log /dev/stdout")
        k8s.core.v1.ConfigMap(f"{name}-proxy-conf", metadata=meta("proxy-conf"), data={"nginx.conf": conf}, opts=kopts)

        # --- the pod
        runtime_img = image_ref(plan.runtime, "{registry}", image_overrides.get(plan.runtime))
        proxy_img = image_ref("proxy", "{registry}", image_overrides.get("proxy"))
        fetch_img = image_ref("awscli", "{registry}")
        pinned = lambda ref: pulumi.Output.from_input(registry).apply(  # noqa: E731
            lambda r: ref.pinned.replace("{registry}", r))
        # ECR does not fill a pull-through cache from a first pull by digest (aws/containers-roadmap#2837):
        # one Job per image pulls its tag on a system node first; the workload then pulls the digest.
        warm_jobs = []
        for key, ref in (("runtime", runtime_img), ("proxy", proxy_img), ("fetch", fetch_img)):
            if ref.warm is None:
                continue
            warm_jobs.append(k8s.batch.v1.Job(
                f"{name}-warm-{key}", metadata=meta(f"warm-{key}"),
                spec=k8s.batch.v1.JobSpecArgs(backoff_limit=4, ttl_seconds_after_finished=3600,
                                              template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels={**labels, "llm-platform/role": "warm-cache"}),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="Never", automount_service_account_token=False, enable_service_links=False,
                        node_selector={NODE_POOL_LABEL: "system"},
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True, run_as_user=RUNTIME_UID,
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
                        containers=[k8s.core.v1.ContainerArgs(
                            name="pull", image=pulumi.Output.from_input(registry).apply(
                                lambda r, w=ref.warm: w.replace("{registry}", r)),
                            command=["/bin/sh", "-c", "true"], security_context=hardened(RUNTIME_UID),
                            resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "10m", "memory": "16Mi"},
                                                                           limits={"memory": "64Mi"}))]))),
                opts=pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(
                    custom_timeouts=pulumi.CustomTimeouts(create="45m", update="45m")))))
        env_fetch = {"AWS_REGION": region, "MODEL_BUCKET": args.model_bucket_name, "MODEL_PREFIX": prefix,
                     "MANIFEST": manifest or "", "MANIFEST_SHA256": manifest_sha256 or "", "LLM_NAME": plan.name,
                     "HOME": "/tmp",
                     # AWS CLI v2 (>= 2.13) reads a service's endpoint from AWS_ENDPOINT_URL_<SERVICE>: the fetch
                     # goes to the S3 interface endpoint, inside the VPC CIDR the NetworkPolicy allows
                     **({"AWS_ENDPOINT_URL_S3": args.s3_endpoint_url} if args.s3_endpoint_url is not None else {})}
        spec = container_spec(plan, max_tokens, host="127.0.0.1")
        self._runtime_args = list(spec.args)
        startup_failures = math.ceil(plan.startup_seconds / 10) + 6
        # image pull + weight download + load takes longer than Pulumi's default 10-minute await
        workload_timeouts = pulumi.CustomTimeouts(create=f"{plan.startup_seconds + 3600}s",
                                                  update=f"{plan.startup_seconds + 3600}s")

        def https_probe(**kw):
            return k8s.core.v1.ProbeArgs(http_get=k8s.core.v1.HTTPGetActionArgs(
                path="/health", port=TARGET_PORT, scheme="HTTPS"), timeout_seconds=5, **kw)

        def volumes(with_proxy: bool):
            model = (k8s.core.v1.VolumeArgs(name="model", persistent_volume_claim=k8s.core.v1.
                                            PersistentVolumeClaimVolumeSourceArgs(claim_name=cache_claim.metadata.name))
                     if cache_claim is not None else
                     k8s.core.v1.VolumeArgs(name="model", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                         size_limit=f"{plan.volume_gib}Gi")))
            v = [model,
                 k8s.core.v1.VolumeArgs(name="cache",
                                        empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="20Gi")),
                 k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="8Gi")),
                 k8s.core.v1.VolumeArgs(name="shm", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                     medium="Memory", size_limit="16Gi"))]
            if with_proxy:
                v += [k8s.core.v1.VolumeArgs(name="proxy-conf", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                          name="proxy-conf", default_mode=0o440)),
                      k8s.core.v1.VolumeArgs(name="client-keys", secret=k8s.core.v1.SecretVolumeSourceArgs(
                          secret_name="client-keys", default_mode=0o440)),
                      k8s.core.v1.VolumeArgs(name="proxy-tls", secret=k8s.core.v1.SecretVolumeSourceArgs(
                          secret_name="proxy-tls", default_mode=0o440, items=[
                              k8s.core.v1.KeyToPathArgs(key="tls.crt", path="cert.pem"),
                              k8s.core.v1.KeyToPathArgs(key="tls.key", path="key.pem")])),
                      k8s.core.v1.VolumeArgs(name="proxy-tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                          size_limit="256Mi"))]
            return v

        # with checksums, the node-local cache (components/node_cache.py): one verified copy per node and digest
        cache_claim = (args.node_cache.claim(name, plan.name, ns, plan.volume_gib, pulumi.ResourceOptions(parent=self))
                       if args.node_cache is not None and manifest and manifest_sha256 else None)
        fetch = k8s.core.v1.ContainerArgs(
            name="fetch-model", image=pinned(fetch_img),
            command=["/bin/sh", "-ec", cached_fetch_script() if cache_claim is not None else fetch_script()],
            env=[k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env_fetch.items()],
            resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "2", "memory": "4Gi"},
                                                           limits={"memory": "8Gi"}),
            security_context=hardened(RUNTIME_UID),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="model", mount_path=CACHE_MOUNT if cache_claim is not None
                                                       else "/model"),
                           k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")])
        runtime_mounts = [k8s.core.v1.VolumeMountArgs(name="model", mount_path="/model", read_only=True,
                                                      sub_path=manifest_sha256 if cache_claim is not None else None),
                          k8s.core.v1.VolumeMountArgs(name="cache", mount_path="/cache"),
                          k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                          k8s.core.v1.VolumeMountArgs(name="shm", mount_path="/dev/shm")]
        runtime_env = [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in sorted({"HOME": "/tmp", **spec.env}.items())]
        gpu_limits = {"nvidia.com/gpu": str(plan.gpus_per_node)}
        # CPU and memory from the plan (sizing/host.py): a pod without requests is the first evicted, and vLLM
        # holds tens of GiB of host memory
        host = host_resources(plan)

        def runtime_container(command=None, args=None, probes=True, extra_env=()):
            return k8s.core.v1.ContainerArgs(
                name="runtime", image=pinned(runtime_img), command=command, args=args,
                env=runtime_env + list(extra_env) + ([k8s.core.v1.EnvVarArgs(
                    name="VLLM_HOST_IP", value_from=k8s.core.v1.EnvVarSourceArgs(
                        field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path="status.podIP")))]
                    if multi_node else []),
                resources=k8s.core.v1.ResourceRequirementsArgs(limits={**gpu_limits, **host.limits()},
                                                               requests={**gpu_limits, **host.requests()}),
                security_context=hardened(RUNTIME_UID), volume_mounts=runtime_mounts,
                startup_probe=https_probe(period_seconds=10, failure_threshold=startup_failures) if probes else None,
                readiness_probe=https_probe(period_seconds=10, failure_threshold=3) if probes else None,
                liveness_probe=https_probe(period_seconds=30, failure_threshold=4) if probes else None)

        proxy = k8s.core.v1.ContainerArgs(
            name="proxy", image=pinned(proxy_img),
            args=["nginx", "-c", "/etc/llm-proxy/nginx.conf", "-g", "daemon off;"],
            ports=[k8s.core.v1.ContainerPortArgs(name="https", container_port=TARGET_PORT),
                   k8s.core.v1.ContainerPortArgs(name="metrics", container_port=METRICS_PORT),
                   k8s.core.v1.ContainerPortArgs(name="cluster-metrics", container_port=CLUSTER_METRICS_PORT)],
            resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "250m", "memory": "128Mi"},
                                                           limits={"memory": "512Mi"}),
            security_context=hardened(PROXY_UID),
            readiness_probe=k8s.core.v1.ProbeArgs(tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=TARGET_PORT),
                                                  period_seconds=10),
            liveness_probe=k8s.core.v1.ProbeArgs(tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=TARGET_PORT),
                                                 period_seconds=30, failure_threshold=4),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="proxy-conf", mount_path="/etc/llm-proxy", read_only=True),
                           k8s.core.v1.VolumeMountArgs(name="client-keys", mount_path=KEYS_MAP, sub_path="keys.map",
                                                       read_only=True),
                           k8s.core.v1.VolumeMountArgs(name="proxy-tls", mount_path=TLS_DIR, read_only=True),
                           k8s.core.v1.VolumeMountArgs(name="proxy-tmp", mount_path="/tmp")])

        def pod(containers, role_labels, with_proxy=True):
            return k8s.core.v1.PodTemplateSpecArgs(
                # Karpenter never evicts a replica to consolidate or roll a node: it is loading or serving
                metadata=k8s.meta.v1.ObjectMetaArgs(labels={**labels, **role_labels},
                                                    annotations={DO_NOT_DISRUPT: "true"}),
                spec=k8s.core.v1.PodSpecArgs(
                    service_account_name=plan.name, automount_service_account_token=False,
                    security_context=k8s.core.v1.PodSecurityContextArgs(
                        run_as_non_root=True, run_as_user=RUNTIME_UID, run_as_group=RUNTIME_UID, fs_group=RUNTIME_UID,
                        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
                    # the deployment's Karpenter NodePool: its chosen and fallback types (components/karpenter.py)
                    node_selector={DEPLOYMENT_LABEL: plan.name, NODE_POOL_LABEL: "gpu"},
                    tolerations=[k8s.core.v1.TolerationArgs(key="nvidia.com/gpu", operator="Exists",
                                                            effect="NoSchedule")],
                    topology_spread_constraints=None if multi_node else [k8s.core.v1.TopologySpreadConstraintArgs(
                        max_skew=1, topology_key="topology.kubernetes.io/zone", when_unsatisfiable="ScheduleAnyway",
                        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels))],
                    termination_grace_period_seconds=120, enable_service_links=False,
                    init_containers=[fetch], containers=containers, volumes=volumes(with_proxy)))

        selector_labels = dict(labels)
        if not multi_node:
            self._workload = k8s.apps.v1.Deployment(
                f"{name}-deployment", metadata=meta(plan.name, ann=identity),
                spec=k8s.apps.v1.DeploymentSpecArgs(
                    replicas=plan.replicas_min,
                    selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                    strategy=k8s.apps.v1.DeploymentStrategyArgs(
                        type="RollingUpdate",
                        rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=0, max_unavailable=1)),
                    progress_deadline_seconds=plan.startup_seconds + 600,
                    template=pod([runtime_container(command=list(spec.command) or None, args=self._runtime_args),
                                  proxy], {})),
                opts=pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(
                    ignore_changes=["spec.replicas"] if plan.replicas_max > plan.replicas_min else None,
                    depends_on=[association, *warm_jobs], custom_timeouts=workload_timeouts)))
            scale_ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.name}
        else:
            self._identity = identity
            self._workload = self._leader_worker_set(name, plan, meta, pod, runtime_container, proxy,
                                                    pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(
                                                        ignore_changes=["spec.replicas"],
                                                        depends_on=[association, *warm_jobs],
                                                        custom_timeouts=workload_timeouts)))
            scale_ref = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": plan.name}
            selector_labels["llm-platform/role"] = "leader"

        # --- services: the internal NLB (AWS Load Balancer Controller) and the metrics endpoint
        ann = {
            "service.beta.kubernetes.io/aws-load-balancer-type": "external",
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
            "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
            "service.beta.kubernetes.io/aws-load-balancer-ssl-ports": "https",
            "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy": TLS_POLICY,
            "service.beta.kubernetes.io/aws-load-balancer-backend-protocol": "ssl",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol": "HTTPS",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path": "/health",
            "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port": str(TARGET_PORT),
            "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes":
                "preserve_client_ip.enabled=true,deregistration_delay.timeout_seconds=120",
            "service.beta.kubernetes.io/aws-load-balancer-attributes":
                "load_balancing.cross_zone.enabled=true" + (",deletion_protection.enabled=true"
                                                            if environment == "prod" else ""),
            "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags":
                ",".join(f"{k}={v}" for k, v in tags.items()),
        }
        ann_out = pulumi.Output.from_input(certificate_arn).apply(
            lambda arn: {**ann, "service.beta.kubernetes.io/aws-load-balancer-ssl-cert": arn})
        service = k8s.core.v1.Service(
            f"{name}-service", metadata=k8s.meta.v1.ObjectMetaArgs(name=plan.name, namespace=ns, labels=labels,
                                                                  annotations=ann_out),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer", load_balancer_class="service.k8s.aws/nlb", selector=selector_labels,
                load_balancer_source_ranges=allowed_client_cidrs,
                ports=[k8s.core.v1.ServicePortArgs(name="https", port=443, target_port=TARGET_PORT, protocol="TCP")]),
            opts=kopts)
        k8s.core.v1.Service(
            f"{name}-metrics", metadata=meta(f"{plan.name}-metrics", {"llm-platform/metrics": "true"}),
            spec=k8s.core.v1.ServiceSpecArgs(type="ClusterIP", selector=selector_labels, ports=[
                k8s.core.v1.ServicePortArgs(name="metrics", port=CLUSTER_METRICS_PORT,
                                            target_port=CLUSTER_METRICS_PORT)]),
            opts=kopts)
        self.hostname = service.status.apply(
            lambda s: (s.load_balancer.ingress[0].hostname
                       if s and s.load_balancer and s.load_balancer.ingress else None))

        # --- network policy: default deny, then exactly what serving needs. Egress stays inside the VPC (the
        # interface endpoints, S3's included; DNS to kube-dns) plus the Pod Identity agent: no internet, whatever
        # the VPC's egress. Ingress: the API from clients and the VPC (the NLB's health checks), /metrics on
        # METRICS_PORT from monitoring_cidrs and on CLUSTER_METRICS_PORT from the monitoring namespace only.
        np = k8s.networking.v1
        cidr_peers = lambda cidrs: [np.NetworkPolicyPeerArgs(ip_block=np.IPBlockArgs(cidr=c)) for c in cidrs]  # noqa: E731
        tcp = lambda port: [np.NetworkPolicyPortArgs(port=port, protocol="TCP")]  # noqa: E731
        ingress = [
            np.NetworkPolicyIngressRuleArgs(from_=cidr_peers(allowed_client_cidrs + [vpc_cidr]),
                                            ports=tcp(TARGET_PORT)),
            np.NetworkPolicyIngressRuleArgs(
                from_=[np.NetworkPolicyPeerArgs(namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels={"kubernetes.io/metadata.name": args.monitoring_namespace}))],
                ports=tcp(CLUSTER_METRICS_PORT))]
        if monitoring_cidrs:
            ingress.append(np.NetworkPolicyIngressRuleArgs(from_=cidr_peers(monitoring_cidrs), ports=tcp(METRICS_PORT)))
        egress = [
            np.NetworkPolicyEgressRuleArgs(
                to=[np.NetworkPolicyPeerArgs(
                    namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                        match_labels={"kubernetes.io/metadata.name": "kube-system"}),
                    pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"k8s-app": "kube-dns"}))],
                ports=[np.NetworkPolicyPortArgs(port=53, protocol=p) for p in ("UDP", "TCP")]),
            np.NetworkPolicyEgressRuleArgs(to=cidr_peers([vpc_cidr]), ports=tcp(443)),
            np.NetworkPolicyEgressRuleArgs(to=cidr_peers([POD_IDENTITY_AGENT]), ports=tcp(80))]
        if multi_node:
            # torch.distributed and NCCL between the pods of one group: any port, only these pods
            same = [np.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels))]
            ingress.append(np.NetworkPolicyIngressRuleArgs(from_=same))
            egress.append(np.NetworkPolicyEgressRuleArgs(to=same))
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=meta(plan.name),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                policy_types=["Ingress", "Egress"], ingress=ingress, egress=egress),
            opts=kopts)
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=meta(plan.name),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels)),
            opts=kopts)

        # --- autoscaling on queue depth, bounded by the plan
        queue = QUEUE_METRIC.get(plan.runtime)
        if queue and plan.replicas_max > plan.replicas_min:
            k8s.apiextensions.CustomResource(
                f"{name}-scaler", api_version="keda.sh/v1alpha1", kind="ScaledObject", metadata=meta(plan.name),
                spec={"scaleTargetRef": scale_ref, "minReplicaCount": plan.replicas_min,
                      # enough replicas to carry the plan's maximum on the slowest type its NodePool may launch
                      "maxReplicaCount": replicas_max_any_type(plan), "pollingInterval": 15,
                      # a new replica needs the plan's startup time: don't flap while it loads
                      "cooldownPeriod": max(300, plan.startup.cold_seconds if plan.startup else plan.startup_seconds),
                      "triggers": [{"type": "prometheus", "metadata": {
                          "serverAddress": args.prometheus_url,
                          "query": f'sum({queue}{{namespace="{ns_name}"}})',
                          "threshold": str(args.queue_target)}}]},
                opts=kopts)

        # --- monitoring: scrape through the proxy's metrics port; alerts
        k8s.apiextensions.CustomResource(
            f"{name}-servicemonitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata=meta(plan.name),
            spec={"selector": {"matchLabels": {**labels, "llm-platform/metrics": "true"}},
                  "endpoints": [{"port": "metrics", "scheme": "https", "path": "/metrics", "interval": "30s",
                                 "tlsConfig": {"ca": {"secret": {"name": "proxy-tls", "key": "tls.crt"}},
                                               "serverName": f"{plan.name}-metrics.{ns_name}.svc"}}]},
            opts=kopts)
        k8s.apiextensions.CustomResource(
            f"{name}-alerts", api_version="monitoring.coreos.com/v1", kind="PrometheusRule", metadata=meta(plan.name),
            spec={"groups": [{"name": f"llm-{plan.name}", "rules": alert_rules(
                plan, ns_name, latency_p99_seconds, gpu_memory_percent, args.queue_target)}]},
            opts=kopts)
        self.namespace = ns
        self.register_outputs({"namespace": self.namespace, "hostname": self.hostname})

    def _leader_worker_set(self, name, plan, meta, pod, runtime_container, proxy, kopts):
        """Nodes per replica > 1: vLLM's own multi-node launch (the stock image has no Ray). Every pod runs
        `vllm serve` with the plan's flags plus --nnodes/--node-rank/--master-addr/--master-port and the
        multiprocessing executor; the leader (rank 0) serves the API, the workers run --headless. The rank
        comes from the pod's LWS worker-index label, the rendezvous address from LWS_LEADER_ADDRESS."""
        rank_env = k8s.core.v1.EnvVarArgs(name=NODE_RANK_ENV, value_from=k8s.core.v1.EnvVarSourceArgs(
            field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path=f"metadata.labels['{LWS_WORKER_INDEX_LABEL}']")))
        command = ["vllm", "serve"]
        leader_args = self._runtime_args + vllm_multinode_args(plan, "0", "$(LWS_LEADER_ADDRESS)")
        worker_args = self._runtime_args + vllm_multinode_args(plan, f"$({NODE_RANK_ENV})", "$(LWS_LEADER_ADDRESS)")
        self._lws_args = {"leader": [*command, *leader_args], "worker": [*command, *worker_args]}
        leader = pod([runtime_container(command=command, args=leader_args), proxy], {"llm-platform/role": "leader"})
        # a worker started before the leader's rendezvous waits in torch.distributed's store connect (its
        # timeout), then fails; RecreateGroupOnPodRestart restarts the group together
        worker = pod([runtime_container(command=command, args=worker_args, probes=False, extra_env=(rank_env,))],
                     {"llm-platform/role": "worker"}, with_proxy=False)
        return k8s.apiextensions.CustomResource(
            f"{name}-lws", api_version="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet",
            metadata=meta(plan.name, ann=self._identity),
            spec={"replicas": plan.replicas_min, "startupPolicy": "LeaderCreated",
                  "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdateConfiguration": {
                      "maxUnavailable": 1, "maxSurge": 0}},
                  "leaderWorkerTemplate": {"size": plan.nodes_per_replica,
                                           "restartPolicy": "RecreateGroupOnPodRestart",
                                           "leaderTemplate": leader, "workerTemplate": worker}},
            opts=kopts)


def alert_rules(plan: DeploymentPlan, ns: str, latency_p99: float, gpu_memory_percent: float,
                queue_target: int) -> list:
    sel = f'namespace="{ns}"'
    rules = [
        {"alert": "LlmPodRestarts", "expr": f"increase(kube_pod_container_status_restarts_total{{{sel}}}[30m]) > 2",
         "for": "5m", "labels": {"severity": "warning", "deployment": plan.name},
         "annotations": {"summary": f"{plan.name}: containers restart repeatedly (OOM, failed verification?)"}},
        {"alert": "LlmGpuMemoryHigh",
         "expr": f"max(DCGM_FI_DEV_FB_USED{{{sel}}} / (DCGM_FI_DEV_FB_USED{{{sel}}} + DCGM_FI_DEV_FB_FREE{{{sel}}})) "
                 f"* 100 > {gpu_memory_percent:g}",
         "for": "10m", "labels": {"severity": "warning", "deployment": plan.name},
         "annotations": {"summary": f"{plan.name}: GPU memory above {gpu_memory_percent:g} % (DCGM exporter)"}},
    ]
    if plan.runtime == "vllm":
        rules += [
            {"alert": "LlmLatencyP99High",
             "expr": "histogram_quantile(0.99, sum by (le) "
                     f"(rate(vllm:e2e_request_latency_seconds_bucket{{{sel}}}[5m])))"
                     f" > {latency_p99:g}",
             "for": "10m", "labels": {"severity": "critical", "deployment": plan.name},
             "annotations": {"summary": f"{plan.name}: p99 latency above {latency_p99:g} s"}},
            {"alert": "LlmQueueDepthHigh",
             "expr": f"sum(vllm:num_requests_waiting{{{sel}}}) > {queue_target * plan.replicas_max}",
             "for": "10m", "labels": {"severity": "warning", "deployment": plan.name},
             "annotations": {"summary": f"{plan.name}: requests queue at the autoscaling maximum "
                                        f"({plan.replicas_max} replicas)"}},
        ]
    return rules
