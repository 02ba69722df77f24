"""Private network and firewall: security-group ingress, load-balancer scheme, inference subnets, flow logs."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any, cast

from ..core import (
    UNKNOWN,
    Context,
    Finding,
    Resource,
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
from ..topology import topology

SG = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LB = "aws:lb/loadBalancer:LoadBalancer"
ELB = "aws:elb/loadBalancer:LoadBalancer"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
RT_ASSOC = "aws:ec2/routeTableAssociation:RouteTableAssociation"
IGW = "aws:ec2/internetGateway:InternetGateway"
DEFAULT_RT = "aws:ec2/defaultRouteTable:DefaultRouteTable"
MAIN_RT_ASSOC = "aws:ec2/mainRouteTableAssociation:MainRouteTableAssociation"

INTERNAL_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-internal": ("true", "0.0.0.0/0"),
    "service.beta.kubernetes.io/aws-load-balancer-scheme": ("internal",),
    "networking.gke.io/load-balancer-type": ("internal",),
    "service.beta.kubernetes.io/azure-load-balancer-internal": ("true",),
}


class Ingress:
    """One ingress permission, whatever resource shape it came from."""

    def __init__(self, where: str, protocol: Any, from_port: Any, to_port: Any, cidrs: Any, peer: bool) -> None:
        self.where, self.protocol, self.from_port, self.to_port = where, protocol, from_port, to_port
        self.cidrs = cidrs          # list of CIDR strings (or UNKNOWN)
        self.peer = peer            # True when the source is a security group / prefix list / self

    @property
    def all_ports(self) -> bool:
        p = str(self.protocol).lower()
        if p in ("-1", "all", "-1.0"):
            return True
        return p in ("tcp", "6", "6.0") and self.from_port in (0, None) and self.to_port == 65535

    def covers(self, port: int) -> Tristate:
        p = str(self.protocol).lower()
        if p in ("-1", "all", "-1.0"):
            return True
        if p not in ("tcp", "6", "6.0"):
            return False
        lo, hi = self.from_port, self.to_port
        if opaque(lo) or opaque(hi):
            return UNKNOWN
        if lo is None and hi is None:
            return False
        lo = lo if lo is not None else hi
        hi = hi if hi is not None else lo
        return bool(lo <= port <= hi)


def ingress_of(r: Resource) -> list[Ingress]:
    """Ingress permissions of a security group (inline), an SG rule, or a VPC ingress rule."""
    out: list[Ingress] = []
    if r.type in (SG, DEFAULT_SG):
        rules = r.get("ingress")
        if opaque(rules):
            return [Ingress("ingress", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, False)]
        for i, g in enumerate(as_list(rules)):
            if not isinstance(g, dict):
                continue
            cidrs = as_list(get(g, "cidrBlocks")) + as_list(get(g, "ipv6CidrBlocks"))
            peer = bool(as_list(get(g, "securityGroups")) or as_list(get(g, "prefixListIds")) or get(g, "self") is True)
            out.append(Ingress(f"ingress[{i}]", get(g, "protocol"), _port(get(g, "fromPort")), _port(get(g, "toPort")),
                               cidrs, peer))
    elif r.type == SG_RULE:
        kind = r.get("type")
        if opaque(kind) or str(kind).lower() != "ingress":
            return []
        cidrs = as_list(r.get("cidrBlocks")) + as_list(r.get("ipv6CidrBlocks"))
        peer = bool(r.get("sourceSecurityGroupId") or as_list(r.get("prefixListIds")) or r.get("self") is True)
        out.append(Ingress("rule", r.get("protocol"), _port(r.get("fromPort")), _port(r.get("toPort")), cidrs, peer))
    elif r.type == SG_INGRESS:
        cidrs = [c for c in (r.get("cidrIpv4"), r.get("cidrIpv6")) if c is not None]
        peer = bool(r.get("referencedSecurityGroupId") or r.get("prefixListId"))
        out.append(Ingress("rule", r.get("ipProtocol"), _port(r.get("fromPort")), _port(r.get("toPort")), cidrs, peer))
    return out


def _port(v: Any) -> Any:
    """An int port, None, or UNKNOWN / SECRET."""
    n = as_num(v)
    return int(n) if isinstance(n, float) else n


def _world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def _within(cidr: str, allowed: list[Any]) -> bool:
    try:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        return False
    for a in allowed:
        try:
            an = ipaddress.ip_network(str(a).strip(), strict=False)
        except ValueError:
            continue
        if net.version == an.version and net.subnet_of(an):     # type: ignore[arg-type]  # same IP version
            return True
    return False


SG_TYPES = (SG, DEFAULT_SG, SG_RULE, SG_INGRESS)


@rule(
    name="no-open-ingress",
    description="No security group admits traffic from anywhere (0.0.0.0/0 or ::/0); with allowedIngressCidrs "
                "configured, every ingress CIDR lies inside one of them.",
    must="Firewall rules limiting access; no direct internet exposure",
    guide="Security Considerations > Network Security",
    severity="critical",
    levels=levels(dev="mandatory"),
    remediation="Admit the API port only from the client CIDRs (allowed_client_cidrs) or from the load "
                "balancer's security group, and metrics only from the monitoring CIDRs.",
    types=SG_TYPES,
    config={"allowedIngressCidrs": {"type": "array", "items": {"type": "string"},
                                    "description": "if set, every ingress CIDR must lie inside one of these"}},
)
def no_open_ingress(r: Resource, ctx: Context) -> Iterator[Finding]:
    allowed = ctx.config.get("allowedIngressCidrs")
    for g in ingress_of(r):
        if opaque(g.cidrs):
            yield undetermined(f"{g.where} is not known yet")
            continue
        for c in g.cidrs:
            if opaque(c):
                yield undetermined(f"a CIDR of {g.where} is not known yet")
            elif isinstance(c, str) and _world(c):
                yield violation(f"{g.where} admits {c} (anywhere) on {_ports(g)}: limit it to the client CIDRs "
                                "or the load balancer's security group")
            elif isinstance(c, str) and allowed and not _within(c, allowed):
                yield violation(f"{g.where} admits {c} on {_ports(g)}, outside allowedIngressCidrs "
                                f"{', '.join(map(str, allowed))}")


def _ports(g: Ingress) -> str:
    if g.all_ports:
        return "all ports"
    if g.from_port == g.to_port:
        return f"port {g.from_port}"
    return f"ports {g.from_port}-{g.to_port}"


@rule(
    name="no-remote-admin-ports",
    description="No security group opens SSH (22) or RDP (3389): administer instances through SSM Session "
                "Manager. All-traffic rules from another security group (e.g. NCCL between nodes) are allowed, and "
                "so are security groups attached only to load balancers (an ALB/NLB listens on its listener ports "
                "only and never forwards 22 or 3389).",
    must="Firewall rules limiting access (the guide's SSH rule is replaced by SSM)",
    guide="Security Considerations > Network Security",
    severity="high",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, an engineer may open SSH from a VPN CIDR while debugging a dev box",
    remediation="Remove the port 22/3389 ingress; use `aws ssm start-session` (the instance role has "
                "AmazonSSMManagedInstanceCore and the VPC has ssm/ssmmessages/ec2messages endpoints).",
    kind="stack",
    config={"ports": {"type": "array", "items": {"type": "integer"}, "default": [22, 3389],
                      "description": "administration ports no ingress may open"}},
)
def no_remote_admin_ports(stack: Stack, ctx: Context) -> Iterator[Finding]:
    ports = [int(p) for p in ctx.config.get("ports") or []]
    groups = stack.of_type(SG, DEFAULT_SG)
    for r in stack.of_type(*SG_TYPES):
        owners = [r] if r.type in (SG, DEFAULT_SG) else \
            stack.referenced(r, "securityGroupId", r.get("securityGroupId"), groups)
        if owners and all(_load_balancer_only(stack, g) for g in owners):
            continue
        for g in ingress_of(r):
            if opaque(g.protocol):
                yield undetermined(f"{g.where} is not known yet", r)
                continue
            if g.all_ports and g.peer and not [c for c in g.cidrs if not opaque(c)]:
                continue        # all traffic from a peer group: cluster traffic, not an admin opening
            for p in ports:
                cov = g.covers(p)
                if cov is UNKNOWN:
                    yield undetermined(f"the ports of {g.where} are not known yet", r)
                    break
                if cov:
                    src = ", ".join(str(c) for c in g.cidrs) or "a peer security group"
                    what = "SSH" if p == 22 else "RDP" if p == 3389 else "admin"
                    yield violation(f"{g.where} opens port {p} ({what}) from {src}: use SSM Session Manager instead", r)
                    break


def _strings(r: Resource) -> set[str]:
    cached = r.__dict__.get("_strings")
    if cached is None:
        cached = r.__dict__["_strings"] = {v for v in _flat(r.props) if isinstance(v, str)}
    return cast("set[str]", cached)


def _flat(v: Any) -> Iterator[Any]:
    if isinstance(v, dict):
        for x in v.values():
            yield from _flat(x)
    elif isinstance(v, list):
        for x in v:
            yield from _flat(x)
    else:
        yield v


def _load_balancer_only(stack: Stack, sg: Resource) -> bool:
    """The security group is attached to load balancers and to nothing else that listens (instances, launch
    templates, tasks, pods, endpoints): found by its id / ARN / name in other resources' properties."""
    ids = sg.identifiers() - {sg.urn}
    users = []
    for r in stack.resources:
        if r is sg or r.type in SG_TYPES or "/securityGroup" in r.type:     # rules naming it as source/target
            continue
        deps = {u for v in r.property_dependencies.values() for u in v}
        if (ids & _strings(r)) or (sg.urn and sg.urn in deps):
            users.append(r)
    return bool(users) and all(u.type in (LB, ELB) for u in users)


@rule(
    name="internal-load-balancers",
    description="Load balancers are internal: ALB/NLB/classic ELB `internal` true, Kubernetes LoadBalancer "
                "services annotated internal, ALB ingresses not internet-facing.",
    must="No direct internet exposure",
    guide="Security Considerations > Network Security",
    severity="critical",
    levels=levels(dev="mandatory"),
    remediation="Set internal: true (the default is internet-facing) and place the load balancer in private "
                "subnets; for Kubernetes annotate service.beta.kubernetes.io/aws-load-balancer-scheme: internal.",
    types=(LB, ELB, "k8s:Service", "k8s:Ingress"),
)
def internal_lbs(r: Resource, ctx: Context) -> Iterator[Finding]:
    kind = k8s_kind(r.type)
    if kind == "Service":
        if r.get("spec.type") != "LoadBalancer":
            return
        ann = r.get("metadata.annotations") or {}
        if opaque(ann):
            yield undetermined("metadata.annotations is not known yet")
            return
        for k, ok in INTERNAL_ANNOTATIONS.items():
            if str(ann.get(k, "")).lower() in ok:
                return
        yield violation("a Service of type LoadBalancer without an internal annotation gets an internet-facing "
                        "load balancer")
        return
    if kind == "Ingress":
        ann = r.get("metadata.annotations") or {}
        if isinstance(ann, dict) and str(ann.get("alb.ingress.kubernetes.io/scheme", "")).lower() == "internet-facing":
            yield violation("the ingress asks the AWS Load Balancer Controller for an internet-facing ALB")
        return
    if r.type == LB and str(r.get("loadBalancerType", "")).lower() == "gateway":
        return
    internal = as_bool(r.get("internal"))
    if opaque(internal):
        yield undetermined("internal is not known yet")
    elif internal is not True:
        yield violation("the load balancer is internet-facing (internal is "
                        f"{'not set' if r.get('internal') is None else repr(r.get('internal'))}): set internal: true")


# ----------------------------------------------------------------------------- stack rules


def _is_igw(gateway: Any, igws: list[Resource], stack: Stack, source: Resource) -> bool:
    if isinstance(gateway, str) and gateway.startswith("igw-"):
        return True
    return bool(gateway is not None and stack.referenced(source, "gatewayId", gateway, igws))


def _default_routes(rt: Resource, stack: Stack) -> list[tuple[Resource, str, Any]]:
    """(route resource, destination, gateway) of default routes in a route table, inline and separate."""
    out: list[tuple[Resource, str, Any]] = []
    for rr in as_list(rt.get("routes")) + as_list(rt.get("route")):
        if isinstance(rr, dict):
            dest = get(rr, "cidrBlock") or get(rr, "ipv6CidrBlock") or get(rr, "destinationCidrBlock")
            if dest in ("0.0.0.0/0", "::/0"):
                out.append((rt, dest, get(rr, "gatewayId")))
    for route in stack.of_type(ROUTE):
        if stack.referenced(route, "routeTableId", route.get("routeTableId"), [rt]):
            dest = route.get("destinationCidrBlock") or route.get("destinationIpv6CidrBlock")
            if dest in ("0.0.0.0/0", "::/0"):
                out.append((route, dest, route.get("gatewayId")))
    return out


@rule(
    name="inference-subnets-private",
    description="Subnets that host inference (ASG vpcZoneIdentifiers, instance subnetId, ECS service subnets) "
                "neither assign public IPs on launch nor route 0.0.0.0/0 or ::/0 to an internet gateway.",
    must="Deploy on a private network/VPC, no direct internet exposure",
    guide="Security Considerations > Network Security",
    severity="critical",
    levels=levels(dev="mandatory"),
    remediation="Put inference in private subnets: mapPublicIpOnLaunch false, and a route table whose only "
                "default route (if any) goes to a NAT gateway (egress nat) or none (air-gapped, VPC endpoints).",
    kind="stack",
)
def inference_subnets_private(stack: Stack, ctx: Context) -> Iterator[Finding]:
    topo = topology(stack)
    igws = stack.of_type(IGW)
    tables = stack.of_type(ROUTE_TABLE, DEFAULT_RT)
    assocs = stack.of_type(RT_ASSOC)
    seen = set()
    bad_routes: dict[tuple[str, str], tuple[Resource, Resource, str, list[str]]] = {}
    for g in topo.inference_groups():
        prop = {"aws:autoscaling/group:Group": "vpcZoneIdentifiers", "aws:ec2/instance:Instance": "subnetId"}.get(
            g.resource.type, "networkConfiguration")
        for ref in g.subnets:
            for sn in topo.subnet(ref, g.resource, prop):
                if sn.key in seen:
                    continue
                seen.add(sn.key)
                if as_bool(sn.get("mapPublicIpOnLaunch")) is True:
                    yield violation(f"subnet {sn.name} hosts {g.resource.name} and assigns public IPs on launch "
                                    "(mapPublicIpOnLaunch)", sn)
                my_tables = [t for a in assocs if stack.referenced(a, "subnetId", a.get("subnetId"), [sn])
                             for t in stack.referenced(a, "routeTableId", a.get("routeTableId"), tables)]
                for t in my_tables:
                    for src, dest, gw in _default_routes(t, stack):
                        if _is_igw(gw, igws, stack, src):
                            entry = bad_routes.setdefault((src.key, dest), (src, t, dest, []))
                            entry[3].append(f"{sn.name} ({g.resource.name})")
    for src, t, dest, subnets in bad_routes.values():
        yield violation(f"route table {t.name} sends {dest} to an internet gateway, and it serves the inference "
                        f"subnet(s) {', '.join(subnets)}", src)


@rule(
    name="vpc-flow-logs",
    description="Every VPC has a flow log (to CloudWatch Logs or S3), so traffic to and from the inference "
                "fleet can be audited.",
    must="Monitoring; security monitoring and logging (SOC2)",
    guide="Security Considerations > Data Privacy and Compliance; Monitoring and Observability",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, flow logs cost money and a dev VPC carries no production data",
    remediation="Add aws.ec2.FlowLog(vpc_id=vpc.id, traffic_type='ALL', log_destination=<log group ARN>, "
                "iam_role_arn=...) for each VPC.",
    kind="stack",
)
def vpc_flow_logs(stack: Stack, ctx: Context) -> Iterator[Finding]:
    vpcs = stack.of_type(VPC)
    logs = stack.of_type(FLOW_LOG)
    unresolved = []
    covered: set[str] = set()
    for fl in logs:
        target = fl.get("vpcId")
        hit = stack.referenced(fl, "vpcId", target, vpcs) if target is not None else []
        if hit:
            covered.update(v.key for v in hit)
        elif target is UNKNOWN or (target is None and fl.get("subnetId") is None and fl.get("eniId") is None):
            unresolved.append(fl)
    missing = [v for v in vpcs if v.key not in covered]
    if len(unresolved) >= len(missing):
        if missing:
            for v in missing:
                yield undetermined("a flow log's vpcId is not known yet", v)
        return
    for v in missing:
        yield violation("the VPC has no flow log: traffic to the inference fleet cannot be audited", v)


RULES = [no_open_ingress, no_remote_admin_ports, internal_lbs, inference_subnets_private, vpc_flow_logs]
