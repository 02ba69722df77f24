"""platform eks and platform docker under the mocks harness: the Kubernetes objects and containers
carry the plan (GPU limits, flags, replicas), the hardening, the probes and the network rules."""
import copy
import json
import re

import pytest

from llm_platform.offline.mocks import SECRET, computed_outputs, run_program
from llm_platform.serving.verify import render_verify_function
from llm_platform.settings import parse, read_stack_file
from llm_platform.sizing.fallbacks import replicas_max_any_type
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"


@pytest.fixture(scope="module")
def eks_raw():
    return read_stack_file(ROOT / "Pulumi.eks.yaml")


@pytest.fixture(scope="module")
def eks(shipped):
    return shipped("eks")


@pytest.fixture(scope="module")
def eks_plans(eks_raw):
    return {p.name: p for p in plan_stack(parse(eks_raw))}


@pytest.fixture(scope="module")
def local(shipped):
    return shipped("local")


def pod_of(rec, name):
    return rec.named(f"llm-eks-{name}-k8s-deployment", DEPLOYMENT).inputs["spec"]["template"]["spec"]


def container(pod, name):
    return next(c for c in pod["containers"] if c["name"] == name)


def keys_raw(rec, name):
    return rec.named(f"llm-eks-{name}-k8s-client-keys").raw_inputs["stringData"]["keys.map"]


def flag(args, name):
    return args[args.index(name) + 1]


# --- cluster ----------------------------------------------------------------------------------

def test_cluster_is_private_encrypted_and_logged(eks):
    c = eks.of_type("aws:eks/cluster:Cluster")[0].inputs
    assert c["vpcConfig"]["endpointPublicAccess"] is False and c["vpcConfig"]["endpointPrivateAccess"] is True
    assert c["encryptionConfig"]["resources"] == ["secrets"]
    assert c["encryptionConfig"]["provider"]["keyArn"].startswith("arn:aws:kms:")
    assert set(c["enabledClusterLogTypes"]) == {"api", "audit", "authenticator", "controllerManager", "scheduler"}
    logs = eks.named("llm-eks-cluster-control-plane").inputs
    assert logs["name"] == "/aws/eks/llm-eks/cluster" and logs["kmsKeyId"].startswith("arn:aws:kms:")
    addons = {a.inputs["addonName"] for a in eks.of_type("aws:eks/addon:Addon")}
    assert "eks-pod-identity-agent" in addons


def test_gpu_nodes_come_from_one_karpenter_pool_per_deployment(eks, eks_plans):
    """No static GPU node group: Karpenter NodePools (tests/test_capacity_platforms.py checks them in detail)."""
    assert not [g for g in eks.of_type("aws:eks/nodeGroup:NodeGroup") if g.inputs["amiType"] == "AL2023_x86_64_NVIDIA"]
    pools = {p.inputs["metadata"]["name"]: p.inputs["spec"] for p in eks.of_type("kubernetes:karpenter.sh/v1:NodePool")}
    assert set(pools) == {f"gpu-{n}" for n in eks_plans}
    for spec in pools.values():
        taint = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
        assert spec["template"]["spec"]["taints"] == [taint]
        assert spec["template"]["metadata"]["labels"]["llm-platform/node-pool"] == "gpu"
    lts = [t.inputs for t in eks.of_type("aws:ec2/launchTemplate:LaunchTemplate")]
    assert all(t["metadataOptions"]["httpTokens"] == "required" and t["metadataOptions"]["httpPutResponseHopLimit"] == 1
               for t in lts)
    assert all(t["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true" for t in lts)
    charts = {r.inputs["chart"].rsplit("/", 1)[-1]: r.inputs["version"]
              for r in eks.of_type("kubernetes:helm.sh/v3:Release")}
    assert set(charts) == {"nvidia-device-plugin", "lws", "keda", "aws-load-balancer-controller", "karpenter",
                           "karpenter-crd"}


# --- workloads carry the plan -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["llama-70b", "qwen-coder-32b", "llama-8b", "nomic-embed"])
def test_deployment_carries_the_plan(eks, eks_plans, name):
    plan = eks_plans[name]
    dep = eks.named(f"llm-eks-{name}-k8s-deployment", DEPLOYMENT).inputs
    assert dep["spec"]["replicas"] == plan.replicas_min
    pod = dep["spec"]["template"]["spec"]
    rt = container(pod, "runtime")
    assert rt["resources"]["limits"]["nvidia.com/gpu"] == str(plan.tensor_parallel_size)
    args = rt["args"]
    assert flag(args, "--tensor-parallel-size") == str(plan.tensor_parallel_size)
    assert flag(args, "--max-model-len") == str(plan.max_model_len)
    assert flag(args, "--max-num-seqs") == str(plan.concurrency)
    assert flag(args, "--gpu-memory-utilization") == str(plan.gpu_memory_utilization)
    assert flag(args, "--host") == "127.0.0.1"               # only the proxy sidecar is reachable
    assert pod["nodeSelector"]["llm-platform/deployment"] == plan.name        # its Karpenter NodePool
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    startup = rt["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= plan.startup_seconds
    assert rt["readinessProbe"]["httpGet"]["scheme"] == "HTTPS" and rt["livenessProbe"]
    scaler = [s.inputs for s in eks.of_type("kubernetes:keda.sh/v1alpha1:ScaledObject")
              if s.name == f"llm-eks-{name}-k8s-scaler"]
    assert scaler and scaler[0]["spec"]["minReplicaCount"] == plan.replicas_min
    assert scaler[0]["spec"]["maxReplicaCount"] == replicas_max_any_type(plan) >= plan.replicas_max
    assert "vllm:num_requests_waiting" in scaler[0]["spec"]["triggers"][0]["metadata"]["query"]


def test_every_container_is_hardened_and_images_are_pinned(eks):
    pods = [d.inputs["spec"]["template"]["spec"] for d in eks.of_type(DEPLOYMENT)]
    for lws in eks.of_type(LWS):
        t = lws.inputs["spec"]["leaderWorkerTemplate"]
        pods += [t["leaderTemplate"]["spec"], t["workerTemplate"]["spec"]]
    assert len(pods) == 6
    for pod in pods:
        assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["initContainers"] + pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault"
            assert "@sha256:" in c["image"]


def test_model_cache_is_filled_by_a_verifying_init_container(eks, eks_raw):
    pod = pod_of(eks, "llama-8b")
    fetch = pod["initContainers"][0]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    pinned = eks_raw["llm-platform:models"][2]["checksums"]["sha256"]
    assert env["MANIFEST_SHA256"] == pinned and env["MODEL_PREFIX"].startswith("models/llama-8b/")
    script = fetch["command"][-1]
    # the one verification script (serving/verify.py), run on the downloaded tree (tests/test_boot.py runs it)
    # into a private directory of the node cache, published under <digest>/ only after it passes
    assert render_verify_function() in script and 'llm_verify_model "$work" "$manifest" "$MANIFEST_SHA256"' in script
    assert script.index('llm_verify_model "$work"') < script.index('mv "$work" "$dest"')
    # the node-local cache (components/node_cache.py): the runtime reads only the verified <digest>/ entry
    assert {"name": "model", "mountPath": "/model", "readOnly": True, "subPath": pinned} in container(
        pod, "runtime")["volumeMounts"]


def test_namespaces_enforce_restricted_pod_security(eks):
    for ns in eks.of_type("kubernetes:core/v1:Namespace"):
        assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_network_policy_admits_only_clients_vpc_and_monitoring(eks, eks_raw):
    net = eks_raw["llm-platform:network"]
    pol = eks.named("llm-eks-llama-70b-k8s-netpol").inputs["spec"]
    api, metrics, external_metrics = pol["ingress"]
    assert [p["ipBlock"]["cidr"] for p in api["from"]] == net["allowed_client_cidrs"] + [net["cidr"]]
    assert api["ports"] == [{"port": 8443, "protocol": "TCP"}]
    # /metrics: the in-cluster Prometheus on its own port (the monitoring namespace), monitoring CIDRs on 9443
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert metrics["ports"] == [{"port": 9444, "protocol": "TCP"}]
    assert [p["ipBlock"]["cidr"] for p in external_metrics["from"]] == net["monitoring_cidrs"]
    assert external_metrics["ports"] == [{"port": 9443, "protocol": "TCP"}]
    assert pol["policyTypes"] == ["Ingress", "Egress"]


def test_service_is_an_internal_tls_nlb_limited_to_client_cidrs(eks, eks_raw):
    svc = eks.named("llm-eks-llama-70b-k8s-service").inputs
    ann = svc["metadata"]["annotations"]
    assert ann["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert ann["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"].startswith("arn:aws:acm:")
    assert (ann["service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy"]
            == "ELBSecurityPolicy-TLS13-1-2-2021-06")
    assert svc["spec"]["loadBalancerSourceRanges"] == eks_raw["llm-platform:network"]["allowed_client_cidrs"]
    assert svc["spec"]["ports"][0]["targetPort"] == 8443


def test_client_keys_secret_is_secret_and_alerts_exist(eks):
    keys = eks.named("llm-eks-llama-70b-k8s-client-keys").inputs
    assert keys["stringData"] == SECRET or keys["stringData"]["keys.map"] == SECRET
    assert '"~^(?i:bearer) MOCKSECRET' in keys_raw(eks, "llama-70b")      # case-sensitive regex entries
    rules = eks.named("llm-eks-llama-70b-k8s-alerts").inputs["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"LlmPodRestarts", "LlmGpuMemoryHigh", "LlmLatencyP99High",
                                          "LlmQueueDepthHigh"}
    assert eks.named("llm-eks-llama-70b-k8s-servicemonitor").inputs["spec"]["endpoints"][0]["scheme"] == "https"
    assert eks.named("llm-eks-llama-70b-k8s-pdb").inputs["spec"]["maxUnavailable"] == 1


# --- multi-node -------------------------------------------------------------------------------

def test_405b_spans_nodes_as_a_leader_worker_set_with_the_plans_tp_and_pp(eks, eks_plans):
    plan = eks_plans["llama-405b"]
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size) == (8, 2)
    assert not [d for d in eks.of_type(DEPLOYMENT) if d.name == "llama-405b-deployment"]
    lws = eks.named("llm-eks-llama-405b-k8s-lws", LWS).inputs["spec"]
    assert lws["replicas"] == plan.replicas_min and lws["leaderWorkerTemplate"]["size"] == 2
    leader = lws["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    worker = lws["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    # vLLM's own multi-node launch: the stock image has no Ray (flags checked against vLLM's parser in
    # tests/test_hardening_plans.py)
    lead, work = container(leader, "runtime"), container(worker, "runtime")
    assert lead["command"] == work["command"] == ["vllm", "serve"]
    cmd = " ".join(lead["args"])
    assert "--tensor-parallel-size 8" in cmd and "--pipeline-parallel-size 2" in cmd and "ray" not in cmd
    assert "--nnodes 2 --node-rank 0 --master-addr $(LWS_LEADER_ADDRESS)" in cmd and "--headless" not in cmd
    assert "--node-rank $(LLM_NODE_RANK)" in " ".join(work["args"]) and "--headless" in work["args"]
    for pod in (leader, worker):
        assert container(pod, "runtime")["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert [c["name"] for c in leader["containers"]] == ["runtime", "proxy"]
    scaler = eks.named("llm-eks-llama-405b-k8s-scaler").inputs["spec"]["scaleTargetRef"]
    assert scaler["kind"] == "LeaderWorkerSet"
    pg = eks.of_type("aws:ec2/placementGroup:PlacementGroup")
    assert len(pg) == 1 and pg[0].inputs["strategy"] == "cluster"


# --- docker -----------------------------------------------------------------------------------

def test_docker_stack_binds_only_to_loopback(local):
    containers = {c.name: c.inputs for c in local.of_type("docker:index/container:Container")}
    assert set(containers) == {f"llm-local-{m}-{s}" for m in ("qwen-coder-7b", "nomic-embed")
                               for s in ("runtime", "proxy", "proxy-config")}
    ports = [p for c in containers.values() for p in c.get("ports", [])]
    assert ports and all(p["ip"] == "127.0.0.1" for p in ports)
    assert sorted(p["external"] for p in ports) == [8443, 8444] and all(p["internal"] == 8443 for p in ports)
    for name in ("qwen-coder-7b", "nomic-embed"):
        rt, proxy, helper = (containers[f"llm-local-{name}-{role}"] for role in ("runtime", "proxy", "proxy-config"))
        assert "OLLAMA_HOST=127.0.0.1:11434" in rt["envs"]
        assert proxy["networkMode"] == f"container:llm-local-{name}" and "ports" not in proxy
        assert helper["networkMode"] == "none" and "ports" not in helper
        for c in (rt, proxy):
            assert c["readOnly"] is True and c["user"] not in ("", "0", "root") and c["mustRun"] is True
        for c in (rt, proxy, helper):
            assert c["capabilities"] == {"drops": ["ALL"]} and "no-new-privileges" in c["securityOpts"]
            assert "@sha256:" in c["image"] and "privileged" not in c


def _docker(rec, name):
    """A deployment's container by role (runtime, proxy, proxy-config) on the local stack."""
    return rec.named(f"llm-local-{name}", "docker:index/container:Container")


def test_docker_proxy_keeps_a_read_only_root_and_gets_its_files_from_a_one_shot_helper(local):
    """The provider extracts uploads at "/", which Docker refuses on a read-only root: only the helper,
    which never serves, takes uploads; the proxy reads them from the volume."""
    for name in ("qwen-coder-7b", "nomic-embed"):
        proxy, helper = _docker(local, f"{name}-proxy"), _docker(local, f"{name}-proxy-config")
        p, h = proxy.inputs, helper.inputs
        assert "uploads" not in p and p["readOnly"] is True and p["user"] == "101:101"
        assert h["image"] == p["image"] and h["mustRun"] is False and h["attach"] is True and h["restart"] == "no"
        assert "gpus" not in h and "envs" not in h        # no secret travels through an environment variable
        volumes = {v["containerPath"]: v for v in p["volumes"]}
        assert volumes["/run/llm"]["readOnly"] is True and volumes["/var/log/llm-proxy"]["readOnly"] is False
        assert {v["containerPath"]: v["volumeName"] for v in h["volumes"]} == \
            {k: v["volumeName"] for k, v in volumes.items()}
        assert volumes["/run/llm"]["volumeName"] == f"llm-local-{name}-proxy"
        # the proxy starts after the helper and is replaced with it (new keys or config)
        labels = {lb["label"]: lb["value"] for lb in p["labels"]}
        assert labels["llm-platform.proxy-config"] == f"llm-local-{name}-proxy-config-id"
        assert labels["llm-platform.runtime"] == f"llm-local-{name}-runtime-id"
        assert p["command"][:3] == ["nginx", "-c", "/run/llm/nginx.conf"]
        uploads = {u["file"]: u for u in helper.raw_inputs["uploads"]}
        assert set(uploads) == {"/run/llm/nginx.conf", "/run/llm/keys.map", "/run/llm/tls/cert.pem",
                                "/run/llm/tls/key.pem"}
        for f in ("/run/llm/keys.map", "/run/llm/tls/key.pem"):
            assert (uploads[f]["owner"], uploads[f]["group"], uploads[f]["permissions"]) == ("101", "101", "0400")
        assert "BEGIN PRIVATE KEY" in uploads["/run/llm/tls/key.pem"]["content"]
        assert uploads["/run/llm/keys.map"]["content"].count('"~^(?i:bearer) MOCKSECRET') == 2


def test_docker_audit_log_is_writable_by_nginx_and_records_no_prompt_or_key(local):
    helper = _docker(local, "qwen-coder-7b-proxy-config")
    h = helper.inputs
    # root owns the fresh volume's root: the helper (root, no capability, primary group 101) hands it to
    # nginx's group, which uid 101 then writes the audit log into
    assert h["user"] == "0:101" and h["entrypoints"] == ["/bin/sh", "-ec"]
    script = h["command"][0]
    assert "chgrp 101 /var/log/llm-proxy && chmod 0770 /var/log/llm-proxy" in script
    conf = {u["file"]: u for u in helper.raw_inputs["uploads"]}["/run/llm/nginx.conf"]["content"]
    assert "access_log /var/log/llm-proxy/audit.log llm_audit;" in conf
    fmt = conf[conf.index("log_format llm_audit"):conf.index("access_log /var/log")]
    assert "$llm_client" in fmt
    for leak in ("$http_authorization", "$request_body", "$args", "$request_uri", "$request "):
        assert leak not in fmt


def test_docker_secrets_never_appear_in_plaintext_in_any_recorded_input(local):
    keys = [computed_outputs(p.type, p.name, p.raw_inputs, "us-east-1")["result"]
            for p in local.of_type("random:index/randomPassword:RandomPassword")]
    pk = local.of_type("tls:index/privateKey:PrivateKey")[0]
    private_key = computed_outputs(pk.type, pk.name, pk.raw_inputs, "us-east-1")["privateKeyPem"]
    assert len(keys) == 2 and all(k.startswith("MOCKSECRET") for k in keys)
    delivered = json.dumps([_docker(local, f"{m}-proxy-config").raw_inputs for m in ("qwen-coder-7b", "nomic-embed")])
    for secret in keys + [private_key]:
        assert json.dumps(secret)[1:-1] in delivered                 # the helper does deliver them ...
    for c in local.of_type("docker:index/container:Container"):
        assert c.inputs.get("uploads", SECRET) == SECRET             # ... as secrets only
    everything = json.dumps([r.as_dict() for r in local.resources])
    for secret in keys + [private_key, "MOCKKEY", "(?i:bearer) MOCKSECRET"]:
        assert json.dumps(secret)[1:-1] not in everything


def test_docker_vllm_runs_as_a_user_with_a_writable_home_and_caches():
    """uid 1000 has no passwd entry in the vLLM image (torch's getpass.getuser() then fails) and /root is
    0700 there: USER/LOGNAME/HOME are set and every cache lives in an exec tmpfs owned by that uid."""
    raw = copy.deepcopy(read_stack_file(ROOT / "Pulumi.local.yaml"))
    raw["llm-platform:models"][0].update(runtime="vllm", precision="bf16")
    rec = run_program(raw, stack="local", program=ROOT)
    rt = _docker(rec, "qwen-coder-7b-runtime").inputs
    env = dict(e.split("=", 1) for e in rt["envs"])
    assert rt["user"] == "1000:1000" and env["USER"] == env["LOGNAME"] == "llm" and env["HOME"] == "/cache"
    for key in ("XDG_CACHE_HOME", "HF_HOME", "VLLM_CACHE_ROOT", "VLLM_CONFIG_ROOT", "TRITON_CACHE_DIR",
                "TORCHINDUCTOR_CACHE_DIR"):
        assert env[key].startswith("/cache"), key
    assert not [v for v in env.values() if "/root" in v]
    opts = rt["tmpfs"]["/cache"].split(",")
    assert {"rw", "exec", "uid=1000", "gid=1000", "mode=0700"} <= set(opts) and "noexec" not in opts
    assert "/root/.cache" not in rt["tmpfs"]
    assert "exec vllm serve" in rt["command"][0] and "@sha256:" in rt["image"]
    assert rt["readOnly"] is True and rt["capabilities"] == {"drops": ["ALL"]}
    ollama = dict(e.split("=", 1) for e in _docker(rec, "nomic-embed-runtime").inputs["envs"])
    assert ollama["HOME"] == "/cache" and "TRITON_CACHE_DIR" not in ollama


def test_docker_plans_against_the_workstation_gpu(local):
    plan = local.named("llm-local-qwen-coder-7b", "llm-platform:index:ModelDeployment").inputs["plan"]
    assert plan["instance_type"] == "local" and plan["gpu"]["name"] == "L4" and plan["monthly_cost_usd"] == 0


# --- settings for the new platforms -----------------------------------------------------------

@pytest.mark.parametrize("changes, path, words", [
    ({"llm-platform:local": {"gpu": "L4"}}, "llm-platform:local", "platform docker only"),
    ({"llm-platform:eks": {"queue_target": 2}}, "llm-platform:eks", "platform eks only"),
    ({"llm-platform:platform": "docker", "llm-platform:local": {"gpu": "RTX-4090"}}, "llm-platform:local.gpu",
     "not a catalog GPU"),
    ({"llm-platform:platform": "eks", "llm-platform:eks": {"kubernetes_version": "1.10"}},
     "llm-platform:eks.kubernetes_version", ""),
])
def test_platform_blocks_are_checked_with_key_paths(minimal, changes, path, words):
    from llm_platform.settings import ConfigErrors
    with pytest.raises(ConfigErrors) as exc:
        parse({**minimal, **changes})
    found = {e.path: e.message for e in exc.value.errors}
    assert path in found and words in found[path]


def test_eks_block_defaults(minimal):
    c = parse({**minimal, "llm-platform:platform": "eks",
               "llm-platform:network": {**minimal["llm-platform:network"], "egress": "nat"}})
    assert (c.eks.kubernetes_version, c.eks.monitoring_namespace, c.eks.queue_target) == ("1.33", "monitoring", 4)


# --- hardening (issue 10): the recorded eks plan ----------------------------------------------------

def test_serving_network_policies_have_no_internet_egress(eks, eks_raw):
    import ipaddress
    vpc = ipaddress.ip_network(eks_raw["llm-platform:network"]["cidr"])
    policies = [p for p in eks.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy") if p.name.endswith("-netpol")]
    assert len(policies) == 5
    for pol in policies:
        for rule in pol.inputs["spec"]["egress"]:
            assert rule.get("to"), f"{pol.name}: an egress rule without destinations reaches anything"
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    assert net.subnet_of(vpc) or str(net) == "169.254.170.23/32", (pol.name, str(net))
                    assert not peer["ipBlock"].get("except")
                else:
                    assert set(peer) <= {"namespaceSelector", "podSelector"}, (pol.name, peer)
        dns = pol.inputs["spec"]["egress"][0]
        assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
        assert {p["port"] for p in dns["ports"]} == {53}


def test_the_model_fetch_goes_through_the_s3_interface_endpoint(eks):
    (endpoint,) = [e for e in eks.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if e.name.endswith("-s3-interface")]
    assert endpoint.inputs["vpcEndpointType"] == "Interface" and endpoint.inputs["privateDnsEnabled"] is False
    fetch = next(c for c in eks.named("llm-eks-llama-70b-k8s-deployment", DEPLOYMENT).inputs["spec"]["template"]
                 ["spec"]["initContainers"] if c["name"] == "fetch-model")
    url = next(e["value"] for e in fetch["env"] if e["name"] == "AWS_ENDPOINT_URL_S3")
    assert url.startswith("https://bucket.vpce-") and url.endswith(".s3.us-east-1.vpce.amazonaws.com")
    store = json.loads(eks.named("llm-eks-model-store-policy").inputs["policy"])
    reads = next(s for s in store["Statement"] if s["Sid"] == "ReadsOnlyThroughTheVpcEndpoint")
    assert len(reads["Condition"]["StringNotEquals"]["aws:SourceVpce"]) == 2     # gateway and interface


def test_405b_leader_worker_set_starts_with_flags_the_pinned_vllm_accepts(eks, eks_plans):
    import re

    from llm_platform.serving import vllm_cli
    plan = eks_plans["llama-405b"]
    lws = eks.named("llm-eks-llama-405b-k8s-lws", LWS).inputs["spec"]["leaderWorkerTemplate"]
    for role, rank in (("leaderTemplate", 0), ("workerTemplate", 1)):
        c = container(lws[role]["spec"], "runtime")
        assert c["command"] == ["vllm", "serve"]
        # what the kubelet does with $(VAR) before vLLM sees its argv
        env = {"LWS_LEADER_ADDRESS": "llama-405b-0.llama-405b.llm-llama-405b", "LLM_NODE_RANK": str(rank)}
        args = [re.sub(r"\$\((\w+)\)", lambda m, env=env: env[m.group(1)], a) for a in c["args"]]
        ns = vllm_cli.parse(args)
        assert (ns.nnodes, ns.node_rank, ns.headless) == (plan.nodes_per_replica, rank, rank > 0)
        assert ns.tensor_parallel_size * ns.pipeline_parallel_size == plan.gpus_per_replica
    rank_env = next(e for e in container(lws["workerTemplate"]["spec"], "runtime")["env"]
                    if e["name"] == "LLM_NODE_RANK")
    assert (rank_env["valueFrom"]["fieldRef"]["fieldPath"]
            == "metadata.labels['leaderworkerset.sigs.k8s.io/worker-index']")


def test_serving_containers_request_cpu_and_memory_from_the_plan(eks, eks_plans):
    from llm_platform.sizing.host import host_resources
    for name, plan in eks_plans.items():
        if plan.nodes_per_replica > 1:
            spec = eks.named(f"llm-eks-{name}-k8s-lws", LWS).inputs["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
        else:
            spec = eks.named(f"llm-eks-{name}-k8s-deployment", DEPLOYMENT).inputs["spec"]["template"]
        res = container(spec["spec"], "runtime")["resources"]
        host = host_resources(plan)
        assert res["requests"]["memory"] == f"{host.memory_request_gib}Gi" and res["requests"]["cpu"].endswith("m")
        assert host.memory_request_gib >= plan.memory.weights_gib / plan.nodes_per_replica      # weights pass through
        assert res["limits"]["memory"] == f"{host.memory_limit_gib}Gi"


def test_metrics_are_not_open_to_the_whole_vpc(eks, eks_raw):
    conf = eks.named("llm-eks-llama-70b-k8s-proxy-conf").inputs["data"]["nginx.conf"]
    allows = re.findall(r"allow ([0-9./]+);", conf)
    assert allows == eks_raw["llm-platform:network"]["monitoring_cidrs"]
    assert eks_raw["llm-platform:network"]["cidr"] not in allows


def test_node_role_and_load_balancer_controller_policies_pass_parliament(eks):
    from parliament import analyze_policy_string

    from llm_platform.components.eks import lbc_policy
    def issues(doc):
        found = analyze_policy_string(json.dumps(doc), include_community_auditors=False, ignore_private_auditors=True)
        return [(f.issue, str(f.detail)) for f in found.findings]

    docs = [json.loads(p.inputs["policy"]) for p in eks.of_type("aws:iam/rolePolicy:RolePolicy")]
    assert lbc_policy() in docs
    karpenter = [d for d in docs if any(s.get("Sid") == "AllowScopedEC2InstanceAccessActions" for s in d["Statement"])]
    assert len(karpenter) == 1
    for doc in docs:
        if doc is karpenter[0]:
            # Karpenter's published controller policy (components/karpenter.py) splits RunInstances/CreateFleet
            # over statements scoped by resource type and condition: IAM allows each resource by any statement,
            # parliament judges each statement alone (RESOURCE_MISMATCH); the SSM ARN of public parameters has
            # no account; zonal-shift reads are bounded by their condition, not the resource
            left = [i for i in issues(doc) if i[0] != "RESOURCE_MISMATCH"
                    and i != ("RESOURCE_STAR", "['arc-zonal-shift:GetManagedResource']")]
            assert left == [], left
        elif doc != lbc_policy():
            # parliament splits an ARN on every ':'; an S3 key may hold one (the 405B's sha256:<digest> revision)
            colon_key = "arn:aws:s3:::" in json.dumps(doc) and re.search(r'arn:aws:s3:::[^"]*/[^"]*:', json.dumps(doc))
            assert [i for i in issues(doc) if not (colon_key and i[0] == "RESOURCE_MISMATCH")] == [], doc
    # The controller's own published policy uses Resource "*" for these (its conditions bound them), and
    # elasticloadbalancing:CreateAction is a condition key newer than parliament 1.6.4's IAM data.
    lbc = [i for i in issues(lbc_policy()) if i[0] != "RESOURCE_STAR"
           and i != ("UNKNOWN_CONDITION_FOR_ACTION",
                     "Unknown condition elasticloadbalancing:CreateAction for action elasticloadbalancing:AddTags")]
    assert lbc == []
    docs.append(lbc_policy())
    attached = [a.inputs["policyArn"] for a in eks.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
    assert not [a for a in attached if a.endswith(("AmazonSSMManagedInstanceCore", "CloudWatchAgentServerPolicy"))]
    assert "ecr:CreateRepository" not in json.dumps(docs)
    tagging = [s for s in lbc_policy()["Statement"] if {"ec2:CreateTags", "elasticloadbalancing:AddTags"}
               & set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    for s in tagging:
        cond = json.dumps(s.get("Condition", {}))
        # tags only at creation (CreateAction) or on what already carries the controller's tag, or listeners
        assert "CreateAction" in cond or "aws:ResourceTag/elbv2.k8s.aws/cluster" in cond or \
            all(":listener" in r for r in s["Resource"]), s


# ----------------------------------------------------------------------------- the deploy gate on eks

def test_the_eks_plan_can_create_the_deploy_gate_job_of_every_model(eks, eks_plans, eks_raw):
    """Per model, in its namespace: the gate's service account bound by Pod Identity, and a ConfigMap with the
    gate spec and the Job, which Kubernetes' own schema accepts and which points at objects the plan creates."""
    import kubernetes_validate
    version = eks_raw["llm-platform:eks"]["kubernetes_version"]
    role = eks.named("llm-eks-gate-pod", "aws:iam/role:Role")
    policy = json.loads(eks.named("llm-eks-gate-pod", "aws:iam/rolePolicy:RolePolicy").inputs["policy"])["Statement"]
    (read,) = [s for s in policy if s["Action"] == ["secretsmanager:GetSecretValue"]]
    assert "/clients/deploy-gate-" in read["Resource"]
    assert "pods.eks.amazonaws.com" in role.inputs["assumeRolePolicy"]
    for name in eks_plans:
        ns = f"llm-{name}"
        cm = eks.named(f"llm-eks-gate-{name}-spec", "kubernetes:core/v1:ConfigMap").inputs
        job = json.loads(cm["data"]["job.json"])
        assert kubernetes_validate.validate(job, version, strict=True) == version
        assert job["metadata"]["namespace"] == cm["metadata"]["namespace"] == ns
        spec = json.loads(cm["data"][f"{name}.json"])["deployments"][0]
        assert spec["deployment"] == eks_plans[name].as_dict()
        pod = job["spec"]["template"]["spec"]
        sa = eks.named(f"llm-eks-gate-{name}-sa", "kubernetes:core/v1:ServiceAccount").inputs
        assert pod["serviceAccountName"] == sa["metadata"]["name"] and sa["metadata"]["namespace"] == ns
        assoc = eks.named(f"llm-eks-gate-{name}", "aws:eks/podIdentityAssociation:PodIdentityAssociation").inputs
        assert (assoc["namespace"], assoc["serviceAccount"]) == (ns, "deploy-gate")
        # what the Job mounts and calls exists in that namespace: the proxy's TLS secret and the Service
        secrets = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])
                   for r in eks.of_type("kubernetes:core/v1:Secret")}
        assert (ns, "proxy-tls") in secrets
        services = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])
                    for r in eks.of_type("kubernetes:core/v1:Service")}
        (c,) = pod["containers"]
        assert "/llm-platform/eks/deploy-gate@sha256:" in c["image"]
        endpoint = c["args"][c["args"].index("--endpoint") + 1]
        assert endpoint == f"https://{name}.{ns}.svc/v1" and (ns, name) in services
        # its own NetworkPolicy: selected by the Job's labels, nothing in, out only to what the gate needs
        netpol = eks.named(f"llm-eks-gate-{name}-network-policy",
                           "kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs
        assert all(r.get("to") for r in netpol["spec"]["egress"])             # every rule names where
        blocks = [p["ipBlock"]["cidr"] for r in netpol["spec"]["egress"] for p in r["to"] if "ipBlock" in p]
        assert set(blocks) == {eks_raw["llm-platform:network"]["cidr"], "169.254.170.23/32"}
        selector = netpol["spec"]["podSelector"]["matchLabels"]
        assert selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()
        assert netpol["spec"]["ingress"] == [] and netpol["metadata"]["namespace"] == ns
        assert kubernetes_validate.validate({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                             "metadata": {"name": "deploy-gate", "namespace": ns},
                                             "spec": netpol["spec"]}, version, strict=True)
