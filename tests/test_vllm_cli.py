"""Every vLLM command line the platform generates, parsed with the pinned release's own argument definitions
(catalog/vllm_serve_args.json: a dump of vLLM's `vllm serve` parser, catalog/refresh_vllm_args.py)."""
from __future__ import annotations

import re

import pytest

from llm_platform import catalog
from llm_platform.serving import vllm_cli
from llm_platform.serving.runtime import MASTER_PORT, container_spec, vllm_multinode_args
from llm_platform.settings import parse, read_stack_file
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT, STACKS


def kubelet_expand(args: list[str], env: dict) -> list[str]:
    """Kubernetes expands $(VAR) in a container's args from its environment before the process starts."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def vllm_plans():
    for stack in STACKS:
        config = parse(read_stack_file(ROOT / f"Pulumi.{stack}.yaml"))
        for plan in plan_stack(config):
            if plan.runtime == "vllm":
                yield pytest.param(stack, config, plan, id=f"{stack}-{plan.name}")


def test_the_dump_is_of_the_pinned_release():
    dump = vllm_cli.load()
    tag = catalog.load().images["vllm"]["tag"]
    assert f"v{dump['vllm_version']}" == tag, "re-run catalog/refresh_vllm_args.py for the pinned image tag"
    assert dump["source"]["wheel"] == f"vllm-{dump['vllm_version']}-cp38-abi3-manylinux_2_28_x86_64.whl"
    assert re.fullmatch(r"[0-9a-f]{64}", dump["source"]["sha256"])
    flags = {f for o in dump["options"] for f in o["flags"]}
    # the definitions the platform's flags rely on are there, so an empty or truncated dump fails here
    assert len(flags) > 300 and {"--nnodes", "--node-rank", "--master-addr", "--master-port", "--headless",
                                 "--served-model-name", "--max-model-len", "--runner"} <= flags


ALL = list(vllm_plans())


@pytest.mark.parametrize("stack,config,plan", ALL)
def test_every_generated_vllm_command_line_parses(stack, config, plan):
    for host in ("0.0.0.0", "127.0.0.1"):
        args = list(container_spec(plan, config.api.max_tokens, host=host).args)
        ns = vllm_cli.parse(args)
        assert ns.model_tag == "/model" and ns.served_model_name == [plan.name]
        assert ns.tensor_parallel_size == plan.tensor_parallel_size
        assert ns.pipeline_parallel_size == plan.pipeline_parallel_size
        assert ns.max_model_len == plan.max_model_len and ns.max_num_seqs == plan.concurrency
        if plan.task == "embed":
            assert ns.runner == "pooling"
        else:
            assert ns.override_generation_config == {"max_new_tokens": config.api.max_tokens}
        assert ns.trust_remote_code == plan.trust_remote_code


MULTI_NODE = [p for p in ALL if p.values[2].nodes_per_replica > 1]


def test_a_multi_node_plan_exists_to_check():
    assert [p.id for p in MULTI_NODE] == ["eks-llama-405b"]


@pytest.mark.parametrize("stack,config,plan", MULTI_NODE)
def test_every_node_of_a_multi_node_replica_parses(stack, config, plan):
    base = list(container_spec(plan, config.api.max_tokens, host="127.0.0.1").args)
    leader = vllm_cli.parse(base + vllm_multinode_args(plan, "0", "$(LWS_LEADER_ADDRESS)"))
    assert (leader.nnodes, leader.node_rank, leader.headless) == (plan.nodes_per_replica, 0, False)
    assert leader.distributed_executor_backend == "mp" and leader.master_port == MASTER_PORT
    for rank in range(1, plan.nodes_per_replica):
        args = kubelet_expand(base + vllm_multinode_args(plan, "$(LWS_WORKER_INDEX)", "$(LWS_LEADER_ADDRESS)"),
                              {"LWS_WORKER_INDEX": str(rank), "LWS_LEADER_ADDRESS": "llama-405b-0.llama-405b"})
        worker = vllm_cli.parse(args)
        assert worker.node_rank == rank and worker.headless and worker.master_addr == "llama-405b-0.llama-405b"
    # each node runs its share of TP x PP ranks: exactly the GPUs the node has
    assert plan.tensor_parallel_size * plan.pipeline_parallel_size // plan.nodes_per_replica == plan.gpus_per_node


@pytest.mark.parametrize("args,problem", [
    (["/model", "--tensor-parallel"], "ambiguous|unrecognized"),                 # abbreviations are refused
    (["/model", "--max-model-length", "4096"], "unrecognized"),
    (["/model", "--runner", "embed"], "invalid choice"),
    (["/model", "--kv-cache-dtype", "fp8_e4m3fn"], "invalid choice"),            # TGI's spelling, not vLLM's
    (["/model", "--quantization", "awq_gemm"], "not a quantization method"),
    (["/model", "--max-num-seqs", "8.5"], "invalid int"),
    (["/model", "--override-generation-config", "max_new_tokens=4"], "invalid _json"),
    (["/model", "--nnodes", "2", "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2"],
     "needs --distributed-executor-backend mp"),
    (["/model", "--nnodes", "3", "--distributed-executor-backend", "mp", "--tensor-parallel-size", "8"],
     "must divide"),
    (["/model", "--nnodes", "2", "--node-rank", "1", "--distributed-executor-backend", "mp",
      "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2"], "must run --headless"),
])
def test_the_checker_refuses_what_vllm_would_refuse(args, problem):
    with pytest.raises(vllm_cli.VllmArgError, match=problem):
        vllm_cli.parse(args)


def test_ray_is_not_part_of_any_generated_command():
    for p in MULTI_NODE:
        stack, config, plan = p.values
        argv = vllm_multinode_args(plan, "0", "leader")
        assert "ray" not in argv and "--distributed-executor-backend" in argv


def test_boolean_pairs_and_defaults_follow_vllm():
    assert vllm_cli.parse(["/model"]).trust_remote_code is False
    assert vllm_cli.parse(["/model", "--trust-remote-code"]).trust_remote_code is True
    assert vllm_cli.parse(["/model", "--no-trust-remote-code"]).trust_remote_code is False
    ns = vllm_cli.parse(["/model"])
    assert (ns.tensor_parallel_size, ns.pipeline_parallel_size, ns.nnodes, ns.headless) == (1, 1, 1, False)


def test_ollama_models_are_staged_with_the_planned_context_and_default_completion():
    from llm_platform.serving.runtime import ollama_model_parameters
    config = parse(read_stack_file(ROOT / "Pulumi.local.yaml"))
    for plan in plan_stack(config):
        assert plan.runtime == "ollama"
        params = ollama_model_parameters(plan, config.api.max_tokens)
        env = container_spec(plan, config.api.max_tokens).env
        assert params == {"num_ctx": plan.max_model_len, "num_predict": config.api.max_tokens}
        assert env["OLLAMA_CONTEXT_LENGTH"] == str(params["num_ctx"])
