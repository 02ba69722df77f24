"""The pack as a product: metadata of every rule, the environment configs, the CrossGuard adapter run
through the SDK's own analyzer servicer (what `pulumi preview --policy-pack` talks to), and plan.py."""
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

import plan
from llm_platform import catalog
from llm_platform.policies import crossguard
from llm_platform.policies.core import ENVIRONMENTS, SEVERITIES
from llm_platform.policies.engine import environment_config, evaluate, level_of
from llm_platform.policies.rules import ALL, BY_NAME
from tests.conftest import prod_config
from tests.policies_baseline import b64, ec2_stack, sagemaker_stack, to_resources, user_data

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@pytest.mark.parametrize("rule", ALL, ids=lambda r: r.name)
def test_every_rule_is_documented(rule):
    assert rule.description and rule.remediation and rule.guide and rule.must
    assert rule.severity in SEVERITIES
    assert set(rule.levels) == set(ENVIRONMENTS)
    schema = rule.config_schema()
    assert schema["environment"]["default"] == "prod"
    if rule.levels["dev"] != rule.levels["prod"]:
        assert rule.rationale, "a level that differs in dev says why"
    assert rule.name in (ROOT / "policies" / "README.md").read_text(), "the README's table lists every rule"


def test_readme_table_is_the_generated_table_of_exactly_the_rules():
    """The README's rule table is what `python -m policies.levels table` prints: one row per rule of ALL,
    in order, with its levels, severity and config (no rule missing, none invented, none stale)."""
    from llm_platform.policies.levels import table
    readme = (ROOT / "policies" / "README.md").read_text()
    assert table() in readme, "rerun: python -m policies.levels table, paste into policies/README.md"
    rows = [ln for ln in readme.splitlines() if ln.startswith("| `")]
    assert [ln.split("`")[1] for ln in rows] == [r.name for r in ALL]


def test_every_rule_has_a_row_in_the_rule_table_tests():
    """Every rule has its per-rule test row (baseline, passing and failing mutations, unknown, config)."""
    from tests.test_policies_rules import CASES
    assert set(CASES) == {r.name for r in ALL}
    assert all(r.levels["prod"] in ("mandatory", "advisory") for r in ALL), "no rule is switched off in prod"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_shipped_configs_match_the_rules(env):
    shipped = json.loads((ROOT / "policies" / "config" / f"{env}.json").read_text())
    assert shipped == environment_config(env), f"rerun: python -m policies.levels {env}"


def test_levels_follow_the_environment():
    rule = BY_NAME["vpc-flow-logs"]
    assert level_of(rule, {}, "prod")[0] == "mandatory"
    assert level_of(rule, {}, None or "dev")[0] == "advisory"
    assert level_of(rule, {"vpc-flow-logs": {"environment": "dev"}}, "prod")[0] == "advisory"
    assert level_of(rule, {"vpc-flow-logs": "disabled"}, "prod")[0] == "disabled"
    assert level_of(rule, {"all": "advisory"}, "prod")[0] == "advisory"
    assert level_of(BY_NAME["prod-runtime-vllm-or-tgi"], {"all": "mandatory"}, "dev")[0] == "disabled"


def test_pack_metadata_for_the_cli():
    policies = crossguard.policies()
    assert [p.name for p in policies] == [r.name for r in ALL]
    for p, r in zip(policies, ALL, strict=True):
        assert p.enforcement_level == EnforcementLevel(r.levels["prod"])
        assert p.remediation_steps == r.remediation and p.severity is not None
        assert "environment" in p.config_schema.properties
    main = (ROOT / "policies" / "__main__.py").read_text()
    assert "PolicyPack(" in main and "def " not in main, "__main__ only builds the pack"
    pulumi_policy_yaml = yaml.safe_load((ROOT / "policies" / "PulumiPolicy.yaml").read_text())
    assert pulumi_policy_yaml["runtime"]["name"] == "python"
    for req in ("requirements-dev.txt", "policies/requirements.txt"):
        assert "pulumi-policy==1.21.0" in (ROOT / req).read_text()


# ----------------------------------------------------------------------------- through the SDK's servicer


def servicer():
    return _PolicyAnalyzerServicer("llm-platform-guide", "0.1.0", crossguard.policies(), EnforcementLevel.MANDATORY)


def struct(d: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    json_format.ParseDict(d, s)
    return s


def cli_secrets(v):
    """The CLI sends secrets decrypted, as {sig: secret, value: ...}; exports keep the ciphertext."""
    if isinstance(v, dict):
        if "ciphertext" in v:
            return {k: x for k, x in v.items() if k != "ciphertext"} | {"value": "decrypted"}
        return {k: cli_secrets(x) for k, x in v.items()}
    if isinstance(v, list):
        return [cli_secrets(x) for x in v]
    return v


def lt_props(**changes):
    lt = next(x for x in ec2_stack() if x["name"] == "llm-8b" and "launchTemplate" in x["type"])
    props = json.loads(json.dumps(lt["inputs"]))
    props.update(changes)
    return props


def analyze(props, type_="aws:ec2/launchTemplate:LaunchTemplate", name="llm-8b", config=None):
    s = servicer()
    if config:
        req = proto.ConfigureAnalyzerRequest()
        for k, v in config.items():
            pc = proto.PolicyConfig(enforcementLevel=proto.MANDATORY)
            pc.properties.update(v)
            req.policyConfig[k].CopyFrom(pc)
        s.Configure(req, None)
    urn = f"urn:pulumi:prod::p::{type_}::{name}"
    resp = s.Analyze(proto.AnalyzeRequest(type=type_, properties=struct(props), urn=urn,
                                          name=name), None)
    return [(d.policyName, d.enforcementLevel, d.message) for d in resp.diagnostics]


def test_cli_adapter_passes_a_compliant_launch_template():
    assert analyze(lt_props()) == []


def test_cli_adapter_reports_string_booleans_and_floats():
    diags = analyze(lt_props(metadataOptions={"httpTokens": "optional", "httpPutResponseHopLimit": 2.0},
                             networkInterfaces=[{"deviceIndex": 0.0, "associatePublicIpAddress": "true"}]))
    names = {d[0] for d in diags}
    assert names == {"ec2-imdsv2-required", "no-public-ip"}
    assert all(d[1] == proto.MANDATORY for d in diags)


def test_cli_adapter_turns_unknowns_into_the_preview_diagnostic():
    diags = analyze(lt_props(metadataOptions={"httpTokens": UNKNOWN_STRING}))
    (d,) = diags
    assert d[0] == "ec2-imdsv2-required" and d[1] == proto.ADVISORY and "during preview" in d[2]


def test_cli_adapter_reads_the_runtime_from_user_data():
    ud = b64(user_data(vllm_args="--model meta-llama/Llama-3.1-8B-Instruct --host 0.0.0.0 "
                                 "--gpu-memory-utilization 0.99"))
    names = {d[0] for d in analyze(lt_props(userData=ud))}
    assert {"runtime-behind-auth-proxy", "gpu-memory-utilization"} <= names


def test_cli_adapter_uses_policy_config():
    ud = b64(user_data(vllm_args="--model meta-llama/Llama-3.1-8B-Instruct --host 127.0.0.1 "
                                 "--gpu-memory-utilization 0.93"))
    assert "gpu-memory-utilization" in {d[0] for d in analyze(lt_props(userData=ud),
                                                               config={"gpu-memory-utilization": {"max": 0.92}})}
    assert "gpu-memory-utilization" not in {d[0] for d in analyze(lt_props(userData=ud))}


def test_cli_adapter_environment_config_disables_prod_only_rules():
    ud = b64(user_data(vllm_args="serve", image="ollama/ollama:0.6.2",
                       docker_opts="--gpus all --network host -e OLLAMA_HOST=127.0.0.1"))
    assert "prod-runtime-vllm-or-tgi" in {d[0] for d in analyze(lt_props(userData=ud))}
    assert "prod-runtime-vllm-or-tgi" not in {d[0] for d in analyze(
        lt_props(userData=ud), config={"prod-runtime-vllm-or-tgi": {"environment": "dev"}})}


def test_cli_stack_policies_use_property_dependencies():
    s = servicer()
    stack = ec2_stack()
    resources = []
    for x in stack:
        if "webAclAssociation" in x["type"]:
            continue        # no WAF on the load balancer
        props = cli_secrets({**x["inputs"], "id": x["id"], **x["outputs"]})   # state outputs carry the id
        resources.append(proto.AnalyzerResource(type=x["type"], urn=f"urn:pulumi:prod::p::{x['type']}::{x['name']}",
                                                name=x["name"], properties=struct(props)))
    resp = s.AnalyzeStack(proto.AnalyzeStackRequest(resources=resources), None)
    got = [(d.policyName, d.urn.rsplit("::", 1)[-1]) for d in resp.diagnostics]
    assert got == [("waf-on-inference-lb", "api")]


def test_cli_stack_policies_judge_a_keyless_public_api_in_front_of_sagemaker():
    """Through the SDK's servicer as `pulumi preview --policy-pack` runs it: a REST method with authorization NONE
    fronting a SageMaker endpoint is the critical finding; the unconfigured allow-list stays an offline advisory."""
    s = servicer()
    resources = []
    for x in sagemaker_stack():
        inputs = dict(x["inputs"], authorization="NONE") if x["type"] == "aws:apigateway/method:Method" else x["inputs"]
        props = cli_secrets({**inputs, "id": x["id"], **x["outputs"]})
        resources.append(proto.AnalyzerResource(type=x["type"], urn=f"urn:pulumi:prod::p::{x['type']}::{x['name']}",
                                                name=x["name"], properties=struct(props)))
    resp = s.AnalyzeStack(proto.AnalyzeStackRequest(resources=resources), None)
    got = [(d.policyName, d.urn.rsplit("::", 1)[-1], d.enforcementLevel) for d in resp.diagnostics]
    assert got == [("inference-api-authenticated", "llm-api", proto.MANDATORY)]


# ----------------------------------------------------------------------------- plan.py


def run_plan(*argv):
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = plan.main(list(argv))
    return rc, buf.getvalue()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_stacks_have_no_mandatory_violation(stack):
    rc, out = run_plan("--stack", stack, "--json")
    report = json.loads(out)
    assert rc == 0, [v for v in report["violations"] if v["enforcement"] == "mandatory"]
    for v in report["violations"]:
        assert set(v) == {"policy", "enforcement", "resource", "message"}


def test_plan_reports_an_unlisted_model_as_advisory_until_an_allow_list_is_configured(tmp_path):
    arch = catalog.load().models["meta-llama/Llama-3.1-8B-Instruct"].architecture.model_dump()
    raw = prod_config(model="acme/custom-8b", architecture={k: v for k, v in arch.items()
                                                            if k != "task" and v is not None})
    path = tmp_path / "Pulumi.custom.yaml"
    path.write_text(yaml.safe_dump({"config": raw}))
    rc, out = run_plan("--config", str(path), "--json")
    # a model nobody listed is not a violation while no allow-list is configured: one advisory says so
    assert rc == 0
    verdicts = {(v["policy"], v["enforcement"]) for v in json.loads(out)["violations"]}
    assert ("model-allow-list", "advisory") in verdicts and ("model-allow-list", "mandatory") not in verdicts


def test_recording_and_export_judge_alike():
    """The same resources through both offline adapters give the same verdicts."""
    from llm_platform.policies.offline import evaluate_export
    from tests.data.exports.make_exports import export
    stack = ec2_stack()
    for x in stack:
        if x["name"] == "api" and "loadBalancer" in x["type"]:
            x["inputs"]["internal"] = False
    allow = {"model-allow-list": {"allowedModels": ["meta-llama/*"]}}
    v1, _ = evaluate(to_resources(stack), config=allow)
    v2, _ = evaluate_export(export(stack), config=allow)
    assert [(v["policy"], v["resource"]) for v in v1] == [(v["policy"], v["resource"]) for v in v2] == \
        [("internal-load-balancers", "api")]


# ----------------------------------------------------------------------------- CI/CD


def workflow(name):
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def uses(wf):
    return [s["uses"] for job in wf["jobs"].values() for s in job.get("steps", []) if "uses" in s]


@pytest.mark.parametrize("name", ["checks.yml", "preview.yml", "deploy.yml"])
def test_workflow_actions_are_pinned(name):
    import re
    for u in uses(workflow(name)):
        assert re.search(r"@v\d+\.\d+\.\d+$|@[0-9a-f]{40}$", u), f"{u} is not pinned to a release"


def test_pr_preview_applies_the_pack_with_oidc():
    wf = workflow("preview.yml")
    job = wf["jobs"]["preview"]
    assert wf["permissions"]["id-token"] == "write" and wf["permissions"]["pull-requests"] == "write"
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert "head.repo.full_name == github.repository" in job["if"], "no credentials for forks"
    steps = {s.get("uses", "").split("@")[0]: s for s in job["steps"]}
    pulumi = steps["pulumi/actions"]["with"]
    assert pulumi["command"] == "preview" and pulumi["comment-on-pr"] is True
    assert pulumi["policyPacks"] == "policies" and "policies/config/" in pulumi["policyPackConfigs"]
    assert "role-to-assume" in steps["aws-actions/configure-aws-credentials"]["with"]


def test_main_deploys_prod_behind_an_environment():
    wf = workflow("deploy.yml")
    up = wf["jobs"]["up"]
    assert up["environment"] == "${{ matrix.stack }}" and up["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert up["strategy"]["max-parallel"] == 1 and up["needs"] == "checks"
    pulumi = next(s for s in up["steps"] if s.get("uses", "").startswith("pulumi/actions"))["with"]
    assert pulumi["command"] == "up" and pulumi["policyPacks"] == "policies"


def test_untrusted_checks_have_no_credentials():
    wf = workflow("checks.yml")
    text = (ROOT / ".github" / "workflows" / "checks.yml").read_text()
    assert wf["permissions"] == {"contents": "read"} and "secrets." not in text and "id-token" not in text
    run = " ".join(s.get("run", "") for s in wf["jobs"]["offline"]["steps"])
    assert "make test" in run and "plan.py" in run and "policies.analyze" in run
