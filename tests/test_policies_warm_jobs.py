"""A container that only pulls a runtime image (to fill a registry cache) starts no server: the
runtime rules must not judge it, while the same image starting vLLM from a shell still counts."""
from llm_platform.policies.core import Resource
from llm_platform.policies.workloads import workload

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub/vllm/vllm-openai:v0.31.0"


def job(command):
    return Resource(type="kubernetes:batch/v1:Job", name="warm", props={"spec": {"template": {"spec": {
        "containers": [{"name": "pull", "image": IMAGE, "command": command}]}}}})


def test_a_no_op_or_a_script_without_a_server_is_not_a_runtime():
    for command in (["/bin/sh", "-c", "true"], ["true"], ["bash", "-lc", "echo cached"]):
        assert workload(job(command)).processes == [], command


def test_the_same_image_serving_from_a_shell_or_by_its_entrypoint_is_a_runtime():
    assert workload(job(["/bin/sh", "-ec", "exec vllm serve /model --port 8000"])).processes[0].runtime == "vllm"
    assert workload(job(None)).processes[0].runtime == "vllm"
