"""Multi-language use: the pinned SDK's component provider (pulumi.provider.experimental) infers the schema of
llm_platform/provider.py from its type annotations; provider/ is the plugin directory `pulumi package add` takes."""
import json
import textwrap

import yaml

from llm_platform import catalog, provider
from llm_platform.offline.mocks import run_program
from tests.conftest import ROOT


def schema() -> dict:
    from pulumi.provider.experimental.analyzer import Analyzer
    from pulumi.provider.experimental.schema import generate_schema
    result = Analyzer(provider.PROVIDER_NAME).analyze(provider.COMPONENTS)
    spec = generate_schema(provider.PROVIDER_NAME, "0.0.0", None, result["component_definitions"],
                           result["type_definitions"], list(result["dependencies"]))
    return json.loads(json.dumps(spec.to_json() if hasattr(spec, "to_json") else spec,
                                 default=lambda o: {k: v for k, v in vars(o).items() if v is not None}))


def test_the_inferred_schema_lists_the_components_and_their_typed_inputs():
    s = schema()
    net = s["resources"]["llm-platform:index:PrivateNetwork"]
    assert net["isComponent"] is True
    assert {k: v["type"] for k, v in net["inputProperties"].items()} == {
        "cidr": "string", "availabilityZones": "integer", "egress": "string", "logRetentionDays": "integer",
        "protect": "boolean"}
    assert set(net["properties"]) == {"vpcId", "privateSubnetIds", "s3PrefixListId", "kmsKeyArn"}
    assert net["properties"]["privateSubnetIds"]["type"] == "array"
    llm = s["resources"]["llm-platform:index:Ec2LlmPlatform"]
    assert set(llm["requiredInputs"]) == {"models", "clients", "allowedClientCidrs"}
    assert llm["inputProperties"]["models"]["items"]["$ref"] == "#/types/llm-platform:index:ModelArgs"
    model = s["types"]["llm-platform:index:ModelArgs"]
    assert set(model["required"]) == {"name", "model"}
    assert model["properties"]["maxModelLen"]["type"] == "integer"
    assert model["properties"]["provenance"]["type"] == "object"
    assert {"endpoints", "instanceTypes", "modelBucket", "dashboardUrl", "loadBalancerDns"} == set(llm["properties"])
    assert "description" in llm and "GPU" in llm["description"]


def test_the_plugin_directory_runs_the_provider():
    plugin = yaml.safe_load((ROOT / "provider" / "PulumiPlugin.yaml").read_text())
    assert plugin["runtime"] == "python"
    assert "from llm_platform.provider import main" in (ROOT / "provider" / "__main__.py").read_text()
    from pulumi.provider.experimental import component_provider_host
    assert callable(component_provider_host)


def test_the_platform_component_plans_and_builds_a_gpu_fleet_from_plain_inputs(tmp_path):
    """What the provider's construct does: the component called with the engine's plain inputs."""
    (tmp_path / "Pulumi.yaml").write_text("name: polyglot\nruntime: python\n")
    (tmp_path / "__main__.py").write_text(textwrap.dedent("""
        import pulumi
        from llm_platform.provider import Ec2LlmPlatform
        cred = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/dh-AbCdEf"
        p = Ec2LlmPlatform("llm", {"environment": "dev", "clients": ["app"], "allowed_client_cidrs": ["10.9.0.0/16"],
                                   "docker_hub_credential_arn": cred,
                                   "models": [{"name": "coder", "model": "Qwen/Qwen2.5-Coder-7B-Instruct",
                                               "precision": "bf16", "max_model_len": 8192}]})
        pulumi.export("endpoints", p.endpoints)
    """))
    rec = run_program({}, stack="dev", program=tmp_path)
    lts = rec.of_type("aws:ec2/launchTemplate:LaunchTemplate")     # the chosen type and its checked fallbacks
    assert lts and all(catalog.load().instances[lt.inputs["instanceType"]].gpu_count >= 1 for lt in lts)
    assert [r.type for r in rec.resources if r.parent is None] == ["llm-platform:index:Ec2LlmPlatform"]
    # no upstreams given: the platform makes the cache rules its images need (vLLM from Docker Hub, nginx from ECR
    # Public), the Docker Hub one with the given credential
    rules = {r.inputs["ecrRepositoryPrefix"]: r.inputs for r in rec.of_type(
        "aws:ecr/pullThroughCacheRule:PullThroughCacheRule")}
    assert set(rules) == {"docker-hub", "ecr-public"}
    assert rules["docker-hub"]["credentialArn"].endswith("ecr-pullthroughcache/dh-AbCdEf")
