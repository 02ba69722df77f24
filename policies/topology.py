"""How the resources of a stack hang together: which group runs which workload, which load balancer
routes to it, which subnets it lives in. Stack rules use this; links are found by the engine's
property dependencies where the source has them and by ids / ARNs / names otherwise.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .core import JSON, UNKNOWN, Resource, Stack, as_list, get, k8s_kind, opaque, tags_of
from .facts import facts
from .workloads import ECS_TASK, SAGEMAKER_MODEL, Workload, is_workload_type, pod_spec, scan_script, workload

ASG = "aws:autoscaling/group:Group"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
LAUNCH_CONFIGURATION = "aws:ec2/launchConfiguration:LaunchConfiguration"
ECS_SERVICE = "aws:ecs/service:Service"
LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ASG_ATTACHMENT = "aws:autoscaling/attachment:Attachment"
SUBNET = "aws:ec2/subnet:Subnet"
SM_ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
SM_ENDPOINT = "aws:sagemaker/endpoint:Endpoint"

# GPU and accelerator instance families (AWS); anything else is CPU-only.
GPU_FAMILIES = re.compile(r"^(p2|p3|p3dn|p4d|p4de|p5|p5e|p5en|p6-[a-z0-9]+|p6e-[a-z0-9]+|g2|g3|g3s|g4dn|g4ad|g5|g5g|"
                          r"g6|g6e|g6f|gr6|gr6f|g7|g7e|inf1|inf2|trn1|trn1n|trn2|trn2u|dl1|dl2q|f1|f2|vt1)\.", re.I)


def is_gpu_instance_type(itype: Any) -> Any:
    """True / False, or UNKNOWN for an unknown value. Catalog first, then the family name."""
    if opaque(itype):
        return UNKNOWN
    if not isinstance(itype, str):
        return UNKNOWN
    name = itype.strip().removeprefix("ml.")      # SageMaker hosting types: ml.g5.2xlarge
    if name in facts().instances:
        return True
    return bool(GPU_FAMILIES.match(name))


@dataclass
class Group:
    """A set of machines or pods serving one workload: an ASG, an instance, an ECS service, a pod
    controller. `workload` is what they run (may have no recognised runtime, e.g. a GPU ASG whose AMI
    starts the server)."""
    resource: Resource
    workload: Workload | None
    sources: list[Resource] = field(default_factory=list)   # the resources that define it (LT, task definition)
    tags: dict[str, Any] = field(default_factory=dict)
    target_groups: list[Any] = field(default_factory=list)      # target group ARNs / refs as written
    subnets: list[Any] = field(default_factory=list)    # subnet ids / refs as written
    instance_types: list[Any] = field(default_factory=list)

    @property
    def inference(self) -> bool:
        if self.workload is not None and self.workload.processes:
            return True
        return any(is_gpu_instance_type(t) is True for t in self.instance_types)


class Topology:
    def __init__(self, stack: Stack):
        self.stack = stack
        self._workloads: dict[str, Workload | None] = {}
        self._groups: list[Group] | None = None

    def workload(self, r: Resource) -> Workload | None:
        if r.key not in self._workloads:
            self._workloads[r.key] = workload(r)
        return self._workloads[r.key]

    # -- groups
    def groups(self) -> list[Group]:
        if self._groups is not None:
            return self._groups
        st = self.stack
        out: list[Group] = []
        used: set[str] = set()
        templates = st.of_type(LAUNCH_TEMPLATE)
        configs = st.of_type(LAUNCH_CONFIGURATION)
        for asg in st.of_type(ASG):
            srcs: list[Resource] = []
            for path in ("launchTemplate.id", "launchTemplate.name",
                         "mixedInstancesPolicy.launchTemplate.launchTemplateSpecification.launchTemplateId",
                         "mixedInstancesPolicy.launchTemplate.launchTemplateSpecification.launchTemplateName"):
                v = asg.get(path)
                if v is not None:
                    srcs += [t for t in st.referenced(asg, path, v, templates) if t not in srcs]
            lc = asg.get("launchConfiguration")
            if lc is not None:
                srcs += st.referenced(asg, "launchConfiguration", lc, configs)
            if not srcs and len(templates) == 1 and (asg.get("launchTemplate") is not None or
                                                     asg.get("mixedInstancesPolicy") is not None):
                srcs = templates        # one template, reference not resolvable (preview): it is that one
            w = self._merge([self.workload(s) for s in srcs])
            tags = {}
            for s in srcs:
                tags.update(s.tags())
            tags.update(asg.tags())
            itypes = [t for s in srcs for t in as_list(s.get("instanceType"))]
            for o in as_list(asg.get("mixedInstancesPolicy.launchTemplate.overrides")):
                itypes += as_list(get(o, "instanceType"))
            tgs = as_list(asg.get("targetGroupArns"))
            for att in st.of_type(ASG_ATTACHMENT):
                if st.referenced(att, "autoscalingGroupName", att.get("autoscalingGroupName"), [asg]):
                    tgs += as_list(att.get("lbTargetGroupArn")) + as_list(att.get("albTargetGroupArn"))
            out.append(Group(asg, w, srcs, tags, tgs, as_list(asg.get("vpcZoneIdentifiers")), itypes))
            used.update(s.key for s in srcs)
        for inst in st.of_type(INSTANCE):
            w = self.workload(inst)
            out.append(Group(inst, w, [inst], inst.tags(), [], as_list(inst.get("subnetId")),
                             as_list(inst.get("instanceType"))))
        tasks = st.of_type(ECS_TASK)
        for svc in st.of_type(ECS_SERVICE):
            srcs = st.referenced(svc, "taskDefinition", svc.get("taskDefinition"), tasks)
            w = self._merge([self.workload(s) for s in srcs])
            tags = {}
            for s in srcs:
                tags.update(s.tags())
            tags.update(svc.tags())
            tgs = [get(lb, "targetGroupArn") for lb in as_list(svc.get("loadBalancers"))]
            out.append(Group(svc, w, srcs, tags, tgs, as_list(svc.get("networkConfiguration.subnets")), []))
            used.update(s.key for s in srcs)
        for r in st.resources:
            if k8s_kind(r.type) and is_workload_type(r):
                w = self.workload(r)
                if w is not None and w.processes:
                    self._mounted_scripts(r, w)
                    out.append(Group(r, w, [r], tags_of(r.props), [], [], list(w.instance_types)))
        for m in st.of_type(SAGEMAKER_MODEL):
            w = self.workload(m)
            variants = self.sagemaker_variants(m)
            itypes = [get(v, "instanceType") for _, v in variants if get(v, "instanceType") is not None]
            if w is not None and w.processes:
                out.append(Group(m, w, [m] + [c for c, _ in variants], m.tags(), [], [], itypes))
        # launch templates no group uses (a program may start them elsewhere): still judged as groups
        for t in templates:
            if t.key not in used:
                w = self.workload(t)
                if w is not None and w.processes:
                    out.append(Group(t, w, [t], t.tags(), [], [], as_list(t.get("instanceType"))))
        self._groups = out
        return out

    def _mounted_scripts(self, r: Resource, w: Workload) -> None:
        """A container that runs a script from a ConfigMap volume (`command: [bash, /app/startup.sh]`): what the
        script pulls and starts belongs to the server the container runs (e.g. `ollama pull qwen2:0.5b`)."""
        spec = pod_spec(r)
        if not isinstance(spec, dict):
            return
        volumes = {get(v, "name"): get(v, "configMap.name") for v in as_list(spec.get("volumes"))
                   if isinstance(v, dict) and isinstance(get(v, "configMap.name"), str)}
        if not volumes:
            return
        ns = r.get("metadata.namespace") or "default"
        maps = {m.get("metadata.name") or m.name: m for m in self.stack.where(lambda x: k8s_kind(x.type) == "ConfigMap")
                if (m.get("metadata.namespace") or "default") == ns}
        for c in w.containers:
            procs = [p for p in w.processes if p.container == c.name]
            if not procs:
                continue
            for mount in as_list(get(c.raw, "volumeMounts")):
                cm = maps.get(volumes.get(get(mount, "name")))
                path = get(mount, "mountPath")
                if cm is None or not isinstance(path, str):
                    continue
                for arg in [a for a in c.argv if isinstance(a, str) and a.startswith(path.rstrip("/") + "/")]:
                    data = cm.get("data") or {}
                    script = data.get(arg[len(path.rstrip("/")) + 1:]) if isinstance(data, dict) else None
                    if not isinstance(script, str):
                        continue
                    found = Workload(cm, "k8s")
                    scan_script(found, script, f"{c.where}, script {arg}")
                    for p in procs:
                        for q in found.processes:
                            if q.runtime == p.runtime:
                                p.models.extend(m for m in q.models if m not in p.models)
                                p.args = p.args or q.args
                                p.env = {**q.env, **p.env}

    def inference_groups(self) -> list[Group]:
        return [g for g in self.groups() if g.inference]

    @staticmethod
    def _merge(found: list[Workload | None]) -> Workload | None:
        ws = [w for w in found if w is not None]
        if not ws:
            return None
        if len(ws) == 1:
            return ws[0]
        first = ws[0]
        merged = Workload(first.resource, first.platform)
        for w in ws:
            merged.processes += w.processes
            merged.containers += w.containers
            merged.instance_types += w.instance_types
        return merged

    # -- managed hosting
    def sagemaker_variants(self, model: Resource) -> list[tuple[Resource, JSON]]:
        """(endpoint configuration, production variant) pairs that serve a SageMaker model."""
        out: list[tuple[Resource, JSON]] = []
        for cfg in self.stack.of_type(SM_ENDPOINT_CONFIG):
            variants = cfg.get("productionVariants")
            for v in as_list(variants):
                if isinstance(v, dict) and self.stack.referenced(cfg, "productionVariants", get(v, "modelName"),
                                                                 [model]):
                    out.append((cfg, v))
        return out

    def sagemaker_endpoints(self, cfg: Resource) -> list[Resource]:
        return [e for e in self.stack.of_type(SM_ENDPOINT)
                if self.stack.referenced(e, "endpointConfigName", e.get("endpointConfigName"), [cfg])]

    # -- load balancing
    def target_groups_of(self, g: Group) -> list[Resource]:
        tgs = self.stack.of_type(TARGET_GROUP)
        found: list[Resource] = []
        for v in g.target_groups:
            for t in self.stack.referenced(g.resource, "targetGroupArns", v, tgs):
                if t not in found:
                    found.append(t)
        return found

    def target_groups_of_lb(self, lb: Resource) -> list[Resource] | None:
        """Target groups an LB's listeners forward to; None if some listener's links cannot be resolved."""
        st = self.stack
        tgs = st.of_type(TARGET_GROUP)
        listeners = [x for x in st.of_type(LISTENER)
                     if st.referenced(x, "loadBalancerArn", x.get("loadBalancerArn"), [lb])]
        out: list[Resource] = []
        unresolved = False
        for listener in listeners:
            rules = [listener] + [r for r in st.of_type(LISTENER_RULE)
                                  if st.referenced(r, "listenerArn", r.get("listenerArn"), [listener])]
            for src in rules:
                actions = as_list(src.get("defaultActions")) + as_list(src.get("actions"))
                for a in actions:
                    refs = as_list(get(a, "targetGroupArn")) + [get(t, "arn") for t in
                                                                  as_list(get(a, "forward.targetGroups"))]
                    for v in refs:
                        if v is None:
                            continue
                        hit = st.referenced(src, "defaultActions", v, tgs)
                        if not hit:
                            unresolved = True
                        out += [t for t in hit if t not in out]
        return None if unresolved else out

    def subnet(self, ref: Any, source: Resource, prop: str) -> list[Resource]:
        return self.stack.referenced(source, prop, ref, self.stack.of_type(SUBNET))


def topology(stack: Stack) -> Topology:
    topo = stack._topology
    if not isinstance(topo, Topology):
        topo = Topology(stack)
        stack._topology = topo      # one per stack: every stack rule shares the parsed workloads
    return topo
