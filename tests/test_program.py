"""The Pulumi program under the mocks harness: what `pulumi up` would register."""
import pytest

from llm_platform.offline.mocks import run_program
from llm_platform.settings import read_stack_file
from tests.conftest import ROOT, STACKS

PLATFORM_TYPES = {"ec2": "llm-platform:index:Ec2Platform", "eks": "llm-platform:index:EksPlatform",
                  "docker": "llm-platform:index:DockerPlatform"}


@pytest.mark.parametrize("stack", STACKS)
def test_program_registers_one_platform_and_one_deployment_per_model_under_it(stack):
    raw = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    rec = run_program(raw, stack=stack, program=ROOT)
    platform = raw.get("llm-platform:platform", "ec2")
    roots = [r for r in rec.resources if r.parent is None]
    assert [(r.type, r.name) for r in roots] == [(PLATFORM_TYPES[platform], f"llm-{stack}")]
    deployments = rec.of_type("llm-platform:index:ModelDeployment")
    assert sorted(d.name for d in deployments) == sorted(f"llm-{stack}-{m['name']}" for m in raw["llm-platform:models"])
    assert all(d.parent == f"llm-{stack}" for d in deployments)


def test_deployment_inputs_carry_the_plan():
    raw = read_stack_file(ROOT / "Pulumi.prod.yaml")
    rec = run_program(raw, stack="prod", program=ROOT)
    plan = rec.named("llm-prod-llama-70b").inputs["plan"]
    assert plan["precision"] == "fp8" and plan["tensor_parallel_size"] >= 2
    assert plan["memory"]["per_gpu_required_gib"] <= plan["memory"]["per_gpu_usable_gib"]


def test_invalid_config_fails_before_any_resource_exists():
    import pulumi
    raw = read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["llm-platform:models"][0]["precision"] = "awq"      # not an ollama format
    with pytest.raises(pulumi.RunError) as exc:
        run_program(raw, stack="dev", program=ROOT)
    assert "llm-platform:models[0] (qwen-coder-7b).precision" in str(exc.value)
