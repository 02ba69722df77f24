import copy
from pathlib import Path

import pytest

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
