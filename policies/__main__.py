"""The CrossGuard policy pack: `pulumi preview --policy-pack policies [--policy-pack-config cfg.json]`.

Pulumi runs this file as a script from the pack's directory. The rules are a package with relative
imports (the same modules plan.py and `python -m llm_platform.policies.analyze` use), so the directory
is loaded as a package by its path: no sys.path changes, and the same code whether the pack runs inside
this repository or copied on its own. Building the PolicyPack starts the analyzer's gRPC server, which
never returns.
"""
import importlib.util
import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("llm_platform_policies", HERE / "__init__.py",
                                               submodule_search_locations=[str(HERE)])
assert _spec is not None and _spec.loader is not None
_pack = importlib.util.module_from_spec(_spec)
# registering the package module is what makes its relative imports resolve
sys.modules[_spec.name] = _pack
_spec.loader.exec_module(_pack)
crossguard = importlib.import_module(f"{_spec.name}.crossguard")

PolicyPack(
    name="llm-platform-guide",
    description="The self-hosted LLM deployment guide's MUSTs for vLLM / TGI / Ollama on AWS and Kubernetes: "
                "private network, TLS, authentication, WAF limits, no prompt logging, encryption, secrets, model "
                "integrity and provenance, hardware fit, monitoring.",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=crossguard.policies(),
)
