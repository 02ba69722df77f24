"""The CrossGuard policy pack: `pulumi preview --policy-pack policies [--policy-pack-config cfg.json]`.

Only builds the PolicyPack; its constructor starts the analyzer's gRPC server and never returns. The
rules live in importable modules (policies/rules/), shared with `python -m policies.analyze` and plan.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the project root: catalog/, sizing/

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.crossguard import policies  # noqa: E402

PolicyPack(
    name="llm-platform-guide",
    description="The self-hosted LLM deployment guide's MUSTs for vLLM / TGI / Ollama on AWS and Kubernetes: "
                "private network, TLS, authentication, WAF limits, no prompt logging, encryption, secrets, model "
                "integrity and provenance, hardware fit, monitoring.",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policies(),
)
