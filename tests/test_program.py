"""The Pulumi program under the mocks harness: what `pulumi up` would register."""
import pytest

from llm_platform.settings import read_stack_file
from tests.conftest import ROOT, STACKS
from llm_platform.offline.mocks import run_program


@pytest.mark.parametrize("stack", STACKS)
def test_program_registers_one_deployment_per_model_under_the_platform(stack):
    raw = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    rec = run_program(raw, stack=stack, program=ROOT)
    root = rec.of_type("llm-platform:index:LlmPlatform")
    assert len(root) == 1 and root[0].parent is None and root[0].name == f"llm-{stack}"
    deployments = rec.of_type("llm-platform:index:ModelDeployment")
    assert [d.name for d in deployments] == [m["name"] for m in raw["llm-platform:models"]]
    assert all(d.parent == root[0].name for d in deployments)


def test_deployment_inputs_carry_the_plan():
    raw = read_stack_file(ROOT / "Pulumi.prod.yaml")
    rec = run_program(raw, stack="prod", program=ROOT)
    plan = rec.named("llama-70b").inputs["plan"]
    assert plan["precision"] == "fp8" and plan["tensor_parallel_size"] >= 2
    assert plan["memory"]["per_gpu_required_gib"] <= plan["memory"]["per_gpu_usable_gib"]


def test_invalid_config_fails_before_any_resource_exists():
    import pulumi
    raw = read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["llm-platform:models"][0]["precision"] = "awq"      # not an ollama format
    with pytest.raises(pulumi.RunError) as exc:
        run_program(raw, stack="dev", program=ROOT)
    assert "llm-platform:models[0] (qwen-coder-7b).precision" in str(exc.value)
