import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

import llm_platform.offline.mocks as mocks
from llm_platform import catalog

ROOT = Path(__file__).resolve().parent.parent

STACKS = sorted(p.stem.removeprefix("Pulumi.") for p in ROOT.glob("Pulumi.*.yaml"))

MINIMAL = {
    "llm-platform:environment": "dev",
    "llm-platform:network": {"allowed_client_cidrs": ["10.10.0.0/16"]},
    "llm-platform:api": {"clients": ["ide"]},
    "llm-platform:images": {"docker_hub_credential_arn":
                            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-Qx7LmZ"},
    "llm-platform:models": [{"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct"}],
}

PROD_MODEL = {
    "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
    "checksums": {"manifest": "SHA256SUMS", "sha256": "a" * 64},
    "provenance": {"source": "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct", "license": "llama3.1",
                   "approved_by": "security@example.com", "review_status": "approved"},
    "replicas": 2,
}


@pytest.fixture(scope="session")
def cat():
    return catalog.load()


# One run per distinct program input per session. Many tests (and plan.main, which imports run_program when it
# runs) record the same shipped stack; a program under the mocks is deterministic in its inputs, so the suite runs
# each distinct (program, stack, config) once. Installed here, before any test module imports run_program by name.
# Recordings are shared: tests read them, never mutate them.
_run_program_uncached = mocks.run_program
_RUNS: dict[tuple[str, str, str, bool, str | None], Any] = {}


def _run_program_once(raw_config: dict, stack: str = "test", *, program=".", project=None, preview=False):
    key = (str(Path(program).resolve()), stack, json.dumps(raw_config, sort_keys=True, default=str), preview, project)
    if key not in _RUNS:
        _RUNS[key] = _run_program_uncached(raw_config, stack, program=program, project=project, preview=preview)
    return _RUNS[key]


mocks.run_program = _run_program_once


def plan_output(*argv: str) -> tuple[int, str, str]:
    """plan.py in-process (exit code, stdout, stderr), once per argument list per session."""
    if argv not in _PLANS:
        import plan
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = plan.main(list(argv))
        _PLANS[argv] = (code, out.getvalue(), err.getvalue())
    return _PLANS[argv]


_PLANS: dict[tuple[str, ...], tuple[int, str, str]] = {}
_SHIPPED: dict = {}


@pytest.fixture(scope="session")
def shipped():
    """shipped(stack): the shipped stack's program run once per session under the recording mocks. Shared by many
    modules: read it, never mutate it."""
    def get(stack: str):
        if stack not in _SHIPPED:
            from llm_platform.offline.mocks import run_program
            from llm_platform.settings import read_stack_file
            _SHIPPED[stack] = run_program(read_stack_file(ROOT / f"Pulumi.{stack}.yaml"), stack=stack, program=ROOT)
        return _SHIPPED[stack]
    return get


@pytest.fixture(scope="session")
def shipped_recordings(shipped):
    """The shipped prod and eks programs (the session's one run of each) with their plans: stack ->
    (Recording, DeploymentPlans). Tests read them, never mutate them."""
    from llm_platform.settings import parse, read_stack_file
    from llm_platform.sizing.planner import plan_stack
    return {stack: (shipped(stack), plan_stack(parse(read_stack_file(ROOT / f"Pulumi.{stack}.yaml"))))
            for stack in ("prod", "eks")}


@pytest.fixture
def minimal():
    """A valid dev config; tests mutate one key at a time."""
    return copy.deepcopy(MINIMAL)


def prod_config(**model_overrides) -> dict:
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:environment"] = "prod"
    raw["llm-platform:network"]["availability_zones"] = 3
    raw["llm-platform:monitoring"] = {"alarm_email": "oncall@example.com"}
    raw["llm-platform:models"][0].update(copy.deepcopy(PROD_MODEL), **model_overrides)
    return raw


def pytest_configure(config):
    # pulumi-aws 7 warns about its own deprecated S3 *V2 classes when its modules import
    config.addinivalue_line("filterwarnings", r"ignore::DeprecationWarning:pulumi_aws\..*")
