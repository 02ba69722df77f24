"""Capacity on the platforms, as the programs record it: on EC2 every prod group launches its chosen type and
at least one checked fallback (own launch template, TP and weight), prioritized, with a warm pool and a launch
hook; on EKS Karpenter NodePools cover every deployment's types and every GPU replica has a pool to get a
node from, up to the autoscaling maximum."""
from __future__ import annotations

import base64
import gzip
import json

import pytest
import yaml

from llm_platform import catalog
from llm_platform.offline.mocks import run_program
from llm_platform.settings import parse
from llm_platform.sizing.fallbacks import UNITS_PER_REPLICA, replicas_max_any_type
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT

ASG = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"


def _user_data(lt) -> str:
    raw = base64.b64decode(lt.inputs["userData"])
    return gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()


@pytest.fixture(scope="module")
def prod(shipped_recordings):
    return shipped_recordings["prod"]


@pytest.fixture(scope="module")
def eks(shipped_recordings):
    return shipped_recordings["eks"]


def _group_of(rec, plan):
    groups = [g for g in rec.of_type(ASG) if any(t["key"] == "llm-platform:deployment" and t["value"] == plan.name
                                                 for t in g.inputs.get("tags", []))]
    assert len(groups) == 1, plan.name
    return groups[0]


def _template(rec, plan, itype):
    found = [t for t in rec.of_type(LT) if t.inputs["instanceType"] == itype
             and t.inputs["tags"].get("llm-platform:deployment") == plan.name]
    assert len(found) == 1, (plan.name, itype)
    return found[0]


def test_every_prod_group_launches_the_chosen_type_and_a_checked_fallback(prod):
    rec, plans = prod
    for plan in plans:
        g = _group_of(rec, plan).inputs
        mip = g["mixedInstancesPolicy"]
        assert "launchTemplate" not in g                     # the policy replaces the single template
        assert mip["instancesDistribution"]["onDemandAllocationStrategy"] == "prioritized"
        overrides = mip["launchTemplate"]["overrides"]
        types = [o["instanceType"] for o in overrides]
        assert types == [plan.instance_type, *(f.instance_type for f in plan.fallbacks)] and len(types) >= 2
        assert mip["instancesDistribution"]["onDemandPercentageAboveBaseCapacity"] == 100    # on-demand only
        assert not g.get("capacityRebalance")       # it only replaces Spot instances: none here
        assert g["terminationPolicies"][0] == "AllocationStrategy"     # scale-in drops fallbacks first


def test_each_override_has_its_own_template_with_its_tp_and_weight(prod):
    rec, plans = prod
    for plan in plans:
        overrides = _group_of(rec, plan).inputs["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
        tps = {plan.instance_type: plan.tensor_parallel_size, **{f.instance_type: f.tensor_parallel_size
                                                                   for f in plan.fallbacks}}
        weights = {plan.instance_type: UNITS_PER_REPLICA, **{f.instance_type: f.weighted_capacity
                                                              for f in plan.fallbacks}}
        for o in overrides:
            assert o["launchTemplateSpecification"]["launchTemplateId"]
            lt = _template(rec, plan, o["instanceType"])
            assert int(o["weightedCapacity"]) == weights[o["instanceType"]]
            assert f"--tensor-parallel-size {tps[o['instanceType']]} " in _user_data(lt)


def test_group_sizes_are_capacity_units_and_hold_the_plan(prod):
    rec, plans = prod
    for plan in plans:
        g = _group_of(rec, plan).inputs
        assert g["minSize"] == plan.replicas_min * UNITS_PER_REPLICA
        assert g["maxSize"] == plan.replicas_max * UNITS_PER_REPLICA


def test_every_prod_group_has_a_stopped_warm_pool_and_a_launch_hook(prod):
    rec, plans = prod
    for plan in plans:
        g = _group_of(rec, plan).inputs
        pool = g["warmPool"]
        assert pool["poolState"] == "Stopped" and pool["instanceReusePolicy"]["reuseOnScaleIn"] is True
        assert pool["minSize"] >= 1
        hooks = g["initialLifecycleHooks"]
        assert [h["lifecycleTransition"] for h in hooks] == ["autoscaling:EC2_INSTANCE_LAUNCHING"]
        assert hooks[0]["heartbeatTimeout"] >= plan.startup.cold_seconds
        # grace covers a cold start, scaling warm-up is the warm-pool start
        assert g["healthCheckGracePeriod"] == plan.startup.cold_seconds
        assert g["defaultInstanceWarmup"] == plan.startup.warm_pool_seconds


def test_scaling_follows_waiting_requests_per_capacity_unit(prod):
    rec, plans = prod
    policies = rec.of_type("aws:autoscaling/policy:Policy")
    assert policies
    for p in policies:
        spec = p.inputs["targetTrackingConfiguration"]["customizedMetricSpecification"]
        ids = {m["id"]: m for m in spec["metrics"]}
        assert ids["per_unit"]["expression"] == "queue * instances / units" and ids["per_unit"]["returnData"]
        assert ids["units"]["metricStat"]["metric"]["metricName"] == "GroupInServiceCapacity"
        assert p.inputs["estimatedInstanceWarmup"] < max(pl.startup.cold_seconds for pl in plans)


def test_warm_pool_boot_units_are_in_every_template(prod):
    rec, _ = prod
    for lt in rec.of_type(LT):
        if "llm-fetch-model" not in _user_data(lt):
            continue
        doc = yaml.safe_load(_user_data(lt))
        paths = {f["path"] for f in doc["write_files"]}
        assert {"/usr/local/sbin/llm-lifecycle", "/etc/systemd/system/llm-warm.service",
                "/etc/systemd/system/llm-ready.service"} <= paths


def test_instances_may_complete_their_own_launch_hook_only(prod):
    rec, _ = prod
    for pol in rec.of_type("aws:iam/rolePolicy:RolePolicy"):
        doc = pol.inputs.get("policy")
        doc = json.loads(doc) if isinstance(doc, str) else doc
        for st in doc.get("Statement", []):
            if "autoscaling:CompleteLifecycleAction" in st.get("Action", []):
                cond = st["Condition"]["StringEquals"]
                assert cond["aws:ResourceTag/llm-platform:stack"] == "prod"
                assert cond["aws:ResourceTag/llm-platform:deployment"] in st["Resource"]   # its own group's ARN
                assert st["Resource"].startswith("arn:aws:autoscaling:")


# ----------------------------------------------------------------------------- eks

def _pools(rec):
    return [r for r in rec.of_type("kubernetes:karpenter.sh/v1:NodePool")]


def test_karpenter_is_installed_pinned_with_its_interruption_queue(eks):
    rec, _ = eks
    releases = {r.inputs["name"]: r.inputs for r in rec.of_type("kubernetes:helm.sh/v3:Release")}
    assert releases["karpenter"]["version"] == releases["karpenter-crd"]["version"] == "1.14.1"
    assert releases["karpenter"]["skipCrds"] is True
    settings = releases["karpenter"]["values"]["settings"]
    queues = rec.of_type("aws:sqs/queue:Queue")
    assert len(queues) == 1 and settings["interruptionQueue"]
    rules = rec.of_type("aws:cloudwatch/eventRule:EventRule")
    assert len(rules) == 5 and len(rec.of_type("aws:cloudwatch/eventTarget:EventTarget")) == 5
    assert any(a.inputs["serviceAccount"] == "karpenter"
               for a in rec.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation"))


def test_no_static_gpu_node_groups_remain(eks):
    rec, _ = eks
    for ng in rec.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert "NVIDIA" not in ng.inputs.get("amiType", ""), ng.name


def test_node_class_is_encrypted_imdsv2_private(eks):
    rec, _ = eks
    classes = {c.inputs["metadata"]["name"]: c.inputs["spec"] for c in
               rec.of_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")}
    assert set(classes) == {"gpu", "gpu-llama-405b"}      # the multi-node replica's own class: a placement group
    for spec in classes.values():
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
        ebs = spec["blockDeviceMappings"][0]["ebs"]
        assert ebs["encrypted"] is True and ebs["kmsKeyID"]
        assert spec["amiSelectorTerms"] == [{"alias": "al2023@latest"}] and spec["instanceStorePolicy"] == "RAID0"
        assert "karpenter.sh/discovery" in spec["subnetSelectorTerms"][0]["tags"]
        assert "install -d -o 1000 -g 1000 -m 0750 /mnt/k8s-disks/0/llm-models" in spec["userData"]
    assert "placementGroupSelector" in classes["gpu-llama-405b"] and "placementGroupSelector" not in classes["gpu"]


def test_node_pools_cover_every_deployments_types_up_to_its_maximum(eks):
    rec, plans = eks
    cat = catalog.load()
    pools = {p.inputs["metadata"]["name"]: p.inputs["spec"] for p in _pools(rec)}
    for plan in plans:
        spec = pools[f"gpu-{plan.name}"]
        req = {r["key"]: r["values"] for r in spec["template"]["spec"]["requirements"]}
        types = req["node.kubernetes.io/instance-type"]
        assert types == [plan.instance_type, *(f.instance_type for f in plan.fallbacks)]
        assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in spec["template"]["spec"]["taints"]
        gpus = int(spec["limits"]["nvidia.com/gpu"])
        per_node = max(cat.instances[t].gpu_count for t in types)
        assert gpus >= replicas_max_any_type(plan) * plan.nodes_per_replica * per_node
        assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"


def _pod_templates(rec):
    for r in rec.resources:
        if r.type == "kubernetes:apps/v1:Deployment":
            yield r, r.inputs["spec"]["template"]
        elif r.type.endswith(":LeaderWorkerSet"):
            lwt = r.inputs["spec"]["leaderWorkerTemplate"]
            yield r, lwt["workerTemplate"]
            if "leaderTemplate" in lwt:
                yield r, lwt["leaderTemplate"]


def test_every_gpu_replica_has_a_node_pool_it_fits(eks):
    """For every pod that asks for GPUs: some NodePool's nodes carry its selector labels, its tolerations
    admit the pool's taints, and every instance type of that pool has the GPUs the pod asks for."""
    rec, plans = eks
    cat = catalog.load()
    pools = [p.inputs for p in _pools(rec)]
    seen = 0
    for workload, tmpl in _pod_templates(rec):
        spec = tmpl["spec"]
        gpus = sum(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) for c in spec["containers"])
        if not gpus:
            continue
        seen += 1
        assert tmpl["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
        selector = spec.get("nodeSelector", {})
        fits = []
        for p in pools:
            labels = p["spec"]["template"]["metadata"]["labels"]
            if not all(labels.get(k) == v for k, v in selector.items()):
                continue
            taints = p["spec"]["template"]["spec"]["taints"]
            tolerated = all(any(t["key"] == tol.get("key") and tol.get("operator") == "Exists"
                                for tol in spec.get("tolerations", [])) for t in taints)
            types = next(r["values"] for r in p["spec"]["template"]["spec"]["requirements"]
                         if r["key"] == "node.kubernetes.io/instance-type")
            if tolerated and all(cat.instances[t].gpu_count >= gpus for t in types):
                fits.append(p["metadata"]["name"])
        assert len(fits) == 1, (workload.name, fits)
    assert seen >= len(plans)


def test_keda_may_scale_to_what_the_slowest_type_needs(eks):
    rec, plans = eks
    scaled = {s.inputs["spec"]["scaleTargetRef"]["name"]: s.inputs["spec"] for s in rec.resources
              if s.type.endswith(":ScaledObject")}
    assert scaled
    for plan in plans:
        if plan.name in scaled:
            assert scaled[plan.name]["maxReplicaCount"] == replicas_max_any_type(plan)
            # a replica that scaled out on a new node takes a cold start: no scale-in before it could serve
            assert scaled[plan.name]["cooldownPeriod"] >= plan.startup.cold_seconds


def test_single_type_workloads_say_why(eks):
    rec, plans = eks
    big = next(p for p in plans if p.name == "llama-405b")
    annotated = [r for r, _ in _pod_templates(rec)
                 if r.inputs["metadata"].get("annotations", {}).get("llm-platform.io/capacity-single-type")]
    assert annotated and big.fallbacks_reason in annotated[0].inputs["metadata"]["annotations"][
        "llm-platform.io/capacity-single-type"]


def test_model_cache_is_the_node_cache_claim(eks):
    rec, plans = eks
    claims = rec.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    pvs = rec.of_type("kubernetes:core/v1:PersistentVolume")
    assert len(claims) == len(pvs) == len(plans)
    for pv in pvs:
        assert pv.inputs["spec"]["hostPath"]["path"] == "/mnt/k8s-disks/0/llm-models"
    for workload, tmpl in _pod_templates(rec):
        vols = {v["name"]: v for v in tmpl["spec"].get("volumes", [])}
        if "model" in vols:
            assert "persistentVolumeClaim" in vols["model"], workload.name


# ----------------------------------------------------------------------------- config-driven capacity (ec2)

def _one_model(capacity: dict):
    from tests.conftest import prod_config
    raw = prod_config()
    raw["llm-platform:models"][0]["capacity"] = capacity
    return run_program(raw, stack="prod", program=ROOT), plan_stack(parse(raw))[0]


def test_reservations_snapshot_and_fast_restore_reach_the_group():
    rec, plan = _one_model({"reservations": {"ids": ["cr-0123456789abcdef0"]},
                            "model_snapshot_id": "snap-0123456789abcdef0", "fast_snapshot_restore": True})
    g = _group_of(rec, plan).inputs
    assert g["capacityReservationSpecification"] == {
        "capacityReservationPreference": "capacity-reservations-first",
        "capacityReservationTarget": {"capacityReservationIds": ["cr-0123456789abcdef0"]}}
    for lt in [t for t in rec.of_type(LT) if t.inputs["tags"].get("llm-platform:deployment") == plan.name]:
        model = [b for b in lt.inputs["blockDeviceMappings"] if b["deviceName"] == "/dev/sdf"]
        assert model and model[0]["ebs"]["snapshotId"] == "snap-0123456789abcdef0"
        assert model[0]["ebs"]["encrypted"] == "true" and model[0]["ebs"]["kmsKeyId"]
        assert "MODEL_SNAPSHOT_ID=snap-0123456789abcdef0" in _user_data(lt)
    fsr = rec.of_type("aws:ebs/fastSnapshotRestore:FastSnapshotRestore")
    assert len(fsr) == 3 and {f.inputs["snapshotId"] for f in fsr} == {"snap-0123456789abcdef0"}
    policies = [json.loads(p.inputs["policy"]) if isinstance(p.inputs["policy"], str) else p.inputs["policy"]
                for p in rec.of_type("aws:iam/rolePolicy:RolePolicy")]
    assert any("ec2:DescribeVolumes" in st.get("Action", []) for doc in policies for st in doc.get("Statement", []))


def test_a_capacity_block_launches_only_into_the_block_and_says_why():
    rec, plan = _one_model({"reservations": {"ids": ["cr-0123456789abcdef0"], "capacity_block": True,
                                             "preference": "capacity-reservations-only"}})
    g = _group_of(rec, plan).inputs
    assert "mixedInstancesPolicy" not in g and g["launchTemplate"]
    tags = {t["key"]: t["value"] for t in g["tags"]}
    assert "Capacity Block" in tags["llm-platform:capacity-single-type"]
    (lt,) = [t for t in rec.of_type(LT) if t.inputs["tags"].get("llm-platform:deployment") == plan.name]
    assert lt.inputs["instanceMarketOptions"] == {"marketType": "capacity-block"}
    assert lt.inputs["capacityReservationSpecification"]["capacityReservationTarget"][
        "capacityReservationId"] == "cr-0123456789abcdef0"


def test_without_a_warm_pool_scaling_warms_up_for_a_cold_start():
    rec, plan = _one_model({"warm_pool": False})
    g = _group_of(rec, plan).inputs
    assert "warmPool" not in g and g["defaultInstanceWarmup"] == plan.startup.cold_seconds
