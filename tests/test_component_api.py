"""The components' API, on the shipped stacks: `(name, Args, opts)` with frozen-dataclass Args, outputs that are
exactly the registered ones, children named `<parent>-<role>`; and existing stacks keep their resources: every
URN the pre-redesign program registered (tests/data/urns, recorded from commit 5ee2385's program, one file per
shipped stack) is the URN of exactly one resource of today's program, or one of its aliases as the Pulumi engine
resolves them (own aliases, plus the parent's carried down)."""
import copy
import dataclasses
import inspect
import json
import re
from collections import Counter

import pulumi
import pytest

import llm_platform.components as components
from llm_platform.offline.mocks import AliasSpec, Recorded, alias_urns, make_urn, run_program
from llm_platform.settings import read_stack_file
from tests.conftest import ROOT, STACKS

URNS = ROOT / "tests" / "data" / "urns"
# Deleted on purpose, not renamed (issue 10): the AWS-managed policies that were attached to the GPU instance and
# EKS node roles (every SSM parameter of the account, any log group and metric namespace), replaced by inline
# least-privilege statements. Only these may leave; they must be gone, not aliased.
# And (issue 16) the static GPU node groups of eks, with their launch templates and placement groups: Karpenter's
# NodePools give GPU nodes now.
REMOVED = re.compile(r"\$aws:iam/rolePolicyAttachment:RolePolicyAttachment::"
                     r"(.*-fleet-(AmazonSSMManagedInstanceCore|CloudWatchAgentServerPolicy)|(.*-)?cluster-node-3)$"
                     r"|\$aws:(eks/nodeGroup:NodeGroup|ec2/launchTemplate:LaunchTemplate|ec2/placementGroup:PlacementGroup)"
                     r"::cluster-gpu-[a-z0-9-]+$")


@pytest.fixture(scope="module")
def recordings(shipped):
    return {s: shipped(s) for s in STACKS}


def test_every_shipped_stack_has_its_pre_redesign_urns():
    assert sorted(p.stem for p in URNS.glob("*.txt")) == STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_every_pre_redesign_urn_is_kept_or_aliased_by_exactly_one_resource(recordings, stack):
    rec = recordings[stack]
    old = set((URNS / f"{stack}.txt").read_text().split())
    removed = {u for u in old if REMOVED.search(u)}
    old -= removed
    aliases = alias_urns(rec.resources)
    answers: Counter[str] = Counter()
    for r in rec.resources:
        answers.update({r.urn} | aliases[r.urn])
    answers[rec.stack_urn] += 1
    missing = sorted(u for u in old if answers[u] == 0)
    assert not missing, f"{len(missing)} resources of stack {stack} would be replaced, e.g. {missing[:5]}"
    assert not [u for u in removed if answers[u]], "a deliberately removed policy attachment is still there"
    claimed_twice = sorted(u for u in old if answers[u] > 1)
    assert not claimed_twice, f"the engine refuses two resources aliasing one: {claimed_twice[:5]}"
    # the redesign did change URNs (new platform types, <name>-<role> names): the aliases carry them
    moved = old - {r.urn for r in rec.resources} - {rec.stack_urn}
    assert len(moved) > len(old) / 2


VARIANTS = sorted(p.stem for p in (URNS / "variants").glob("*.json"))


def _variant(name: str) -> tuple[dict, str]:
    """A shipped stack with the changes of variants/<name>.json (as tests/data/urns/record.py applies them)."""
    spec = json.loads((URNS / "variants" / f"{name}.json").read_text())
    raw = read_stack_file(ROOT / f"Pulumi.{spec['base']}.yaml")
    raw.update(copy.deepcopy(spec.get("set", {})))
    for key, value in spec.get("merge", {}).items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw, spec["stack"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_renamed_children_keep_their_resources(variant):
    """What the shipped stacks do not exercise: NAT gateways and subnets per zone, several client and monitoring
    CIDRs, cluster admins: once named by position (<name>-0), now by role, aliased."""
    raw, stack = _variant(variant)
    rec = run_program(raw, stack=stack, program=ROOT)
    old = set((URNS / "variants" / f"{variant}.txt").read_text().split())
    removed = {u for u in old if REMOVED.search(u)}
    aliases = alias_urns(rec.resources)
    answers = {rec.stack_urn} | {r.urn for r in rec.resources} | {a for s in aliases.values() for a in s}
    missing = sorted(old - removed - answers)
    assert not missing, f"{len(missing)} would be replaced, e.g. {missing[:5]}"
    assert not removed & answers, "a deliberately removed policy attachment is still there"
    assert any(u.rsplit("-", 1)[-1].isdigit() for u in old)        # the variant has positional names to carry


def _rec(type_: str, name: str, parent: str, aliases=()) -> Recorded:
    return Recorded(type_, name, None, {}, urn=make_urn("s", "p", parent, type_, name), parent_urn=parent,
                    aliases=list(aliases))


def test_alias_resolution_follows_the_engine():
    """Pulumi's documented case: a component renamed with an alias; its child named `<name>-<role>` follows by
    name, and a child's own alias is also carried under the parent's alias."""
    root = _rec("my:index:NewRoot", "app", "", [AliasSpec(type="my:index:Root")])
    child = _rec("aws:s3/bucket:Bucket", "app-logs", root.urn)
    renamed = _rec("aws:s3/bucket:Bucket", "app-data", root.urn, [AliasSpec(name="data")])
    got = alias_urns([root, child, renamed])
    assert got[root.urn] == {"urn:pulumi:s::p::my:index:Root::app"}
    assert "urn:pulumi:s::p::my:index:Root$aws:s3/bucket:Bucket::app-logs" in got[child.urn]
    assert "urn:pulumi:s::p::my:index:Root$aws:s3/bucket:Bucket::data" in got[renamed.urn]
    assert "urn:pulumi:s::p::my:index:NewRoot$aws:s3/bucket:Bucket::data" in got[renamed.urn]


def test_urns_carry_the_whole_parent_type_chain(recordings):
    rec = recordings["prod"]
    lt = next(r for r in rec.resources if r.type == "aws:ec2/launchTemplate:LaunchTemplate")
    assert lt.urn.split("::")[2] == ("llm-platform:index:Ec2Platform$llm-platform:index:ModelDeployment$"
                                     "llm-platform:compute:GpuInstanceGroup$aws:ec2/launchTemplate:LaunchTemplate")


COMPONENTS = {getattr(components, n) for n in components.__all__}
COMPONENTS = {c for c in COMPONENTS if inspect.isclass(c) and issubclass(c, pulumi.ComponentResource)
              and c is not components.Platform}
HANDLES = ("Provider", "Resource", "ModelDeployment", "RemoteImage")   # attributes for composition, not outputs


def outputs_of(cls) -> dict[str, str]:
    ann = {}
    for klass in reversed(cls.__mro__):
        ann.update(getattr(klass, "__annotations__", {}))
    return {k: v for k, v in ann.items() if not k.startswith("_") and not any(h in v for h in HANDLES)}


@pytest.mark.parametrize("cls", sorted(COMPONENTS, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_component_takes_name_typed_args_and_opts(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())
    assert [p.name for p in params] == ["self", "name", "args", "opts"], cls
    args_cls = getattr(components, params[2].annotation, None) or getattr(
        inspect.getmodule(cls), params[2].annotation)
    assert dataclasses.is_dataclass(args_cls) and args_cls.__dataclass_params__.frozen, args_cls
    assert params[3].default is None
    assert outputs_of(cls), f"{cls.__name__} declares no typed outputs"


@pytest.mark.parametrize("stack", STACKS)
def test_components_register_exactly_their_declared_outputs(recordings, stack):
    rec = recordings[stack]
    by_type = {}
    for cls in COMPONENTS | {components.Ec2Platform, components.EksPlatform, components.DockerPlatform}:
        src = inspect.getsource(cls)
        for line in src.splitlines():
            if '"llm-platform:' in line:
                by_type[line.split('"')[1]] = cls
                break
    seen = set()
    for r in rec.resources:
        if r.custom:
            continue
        cls = by_type[r.type]
        declared = outputs_of(cls)
        registered = rec.registered_outputs[r.urn]
        assert registered <= set(declared), (r.name, registered - set(declared))
        # an output is left out of the registration only when it is None (Pulumi drops None values)
        always = {k for k, v in declared.items() if "Optional" not in v and "None" not in v}
        assert always <= registered, (r.name, declared, registered)
        seen.add(cls)
    assert seen


@pytest.mark.parametrize("stack", STACKS)
def test_every_child_is_named_after_its_parent(recordings, stack):
    """<parent>-<role> all the way down: names say where a resource belongs and never depend on list order."""
    for r in recordings[stack].resources:
        if r.parent is not None:
            assert r.name.startswith(f"{r.parent}-"), (r.type, r.name, r.parent)
            # a role, never a position (<role>-0); a CIDR as a role (10-10-0-0-16) is fine
            assert not re.search(r"[a-z]-\d+$", r.name), (r.type, r.name)


EXPORTS = {
    "ec2": {"endpoints", "client_key_secret_arns", "model_bucket", "model_prefixes", "dashboard_url",
            "load_balancer_dns", "deployments", "monthly_cost_usd", "gate"},
    "eks": {"endpoints", "client_key_secret_arns", "model_bucket", "model_prefixes", "cluster_name", "deployments",
            "monthly_cost_usd", "gate"},
    "docker": {"endpoints", "client_keys", "proxy_certificate_pem", "deployments", "monthly_cost_usd"},
}


@pytest.mark.parametrize("stack", STACKS)
def test_stack_outputs_are_the_platforms_exports(recordings, stack):
    """What `pulumi stack output` shows stays what it was before the redesign, per platform (the internal CA only
    where no certificate_arn is configured), plus `gate` (issue 15: what the deploy workflow runs the gate with)."""
    platform = read_stack_file(ROOT / f"Pulumi.{stack}.yaml").get("llm-platform:platform", "ec2")
    outputs = set(recordings[stack].exports)
    assert outputs - {"internal_ca_certificate_pem"} == EXPORTS[platform]


def test_components_never_read_the_stack_config():
    """llm_platform/program maps StackConfig to Args; a component that imported settings could not be composed
    by a program without our stack config."""
    import ast
    offenders = []
    for path in (ROOT / "components").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("llm_platform.settings")]
    assert offenders == []


def test_a_model_deployment_runs_on_exactly_one_platform_with_its_own_plan():
    from llm_platform.components import ModelDeploymentArgs
    from llm_platform.settings import parse
    from llm_platform.sizing.planner import plan_stack
    from tests.conftest import MINIMAL
    plan = plan_stack(parse(MINIMAL))[0]
    with pytest.raises(ValueError, match="exactly one of ec2, eks, docker"):
        components.ModelDeployment("m", ModelDeploymentArgs(plan=plan))
    other = dataclasses.replace(plan, name="other")
    serving = components.DockerServingArgs(plan=other, stack="s", port=8443, network_name="n", audit_volume_name="a",
                                           runtime_image="r", proxy_image="p", keys_map="k", cert_pem="c", key_pem="k")
    with pytest.raises(ValueError, match="another plan"):
        components.ModelDeployment("m", ModelDeploymentArgs(plan=plan, docker=serving))


def test_children_are_named_by_role_not_position():
    from llm_platform.components.eks import role_of
    from llm_platform.components.load_balancer import cidr_role
    from llm_platform.components.network import zone_roles
    assert zone_roles(3) == ["a", "b", "c"]
    assert zone_roles(["us-east-1b", "us-east-1d"]) == ["b", "d"]
    assert zone_roles(["us-west-2-lax-1a", "us-west-2a"]) == ["us-west-2-lax-1a", "us-west-2a"]   # letters clash
    assert cidr_role("10.10.0.0/16") == "10-10-0-0-16"
    assert role_of("arn:aws:iam::123456789012:role/ci/Deployer_Role") == "deployer-role"
