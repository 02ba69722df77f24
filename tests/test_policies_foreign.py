"""The pack on programs nobody here wrote: public LLM-serving Pulumi programs (Python, TypeScript) and
Kubernetes manifests, recorded in tests/data/foreign/<program>/ with their source (repository, commit,
paths, licence) and the findings a reviewer expects. Judged as prod with no pack config, each must exit 1
with exactly its expected mandatory findings on the right resources, keep silent on the MUSTs it keeps,
and show none of the known false positives (an allow-list nobody configured, admin ports on a load
balancer's security group, GPU limits for CPU builds of vLLM)."""
import io
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from llm_platform.policies import analyze
from llm_platform.policies.core import Stack
from llm_platform.policies.engine import evaluate
from llm_platform.policies.offline import load_document
from llm_platform.policies.rules import BY_NAME
from llm_platform.policies.rules.network import SG_TYPES, _load_balancer_only

FOREIGN = Path(__file__).parent / "data" / "foreign"
PROGRAMS = sorted(p.name for p in FOREIGN.iterdir() if (p / "meta.yaml").exists())


def meta(name):
    return yaml.safe_load((FOREIGN / name / "meta.yaml").read_text())


def judged(name):
    m = meta(name)
    path = FOREIGN / name / m["recorded_in"]
    resources = load_document(path.read_text(), str(path))
    violations, notes = evaluate(resources, environment="prod")
    return m, path, resources, violations, notes


def test_the_corpus_is_large_and_sourced():
    assert len(PROGRAMS) >= 12
    kinds = {meta(n)["recorded_in"] for n in PROGRAMS}
    assert kinds == {"resources.json", "manifests.yaml"}, "Pulumi programs and plain manifests both"
    for name in PROGRAMS:
        m = meta(name)
        assert m["program"] == name
        assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", m["repository"]), name
        assert re.fullmatch(r"[0-9a-f]{40}", m["commit"]), name
        assert m["paths"] and m["licence"] and m["serves"] and m["expected"], name
        assert (FOREIGN / name / m["recorded_in"]).exists(), name


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_has_exactly_its_expected_mandatory_findings(name):
    m, _, _, violations, notes = judged(name)
    got = sorted(f"{v['policy']} @ {v['resource']}" for v in violations if v["enforcement"] == "mandatory")
    assert sorted(set(got)) == sorted(m["expected"])
    assert all(e.split(" @ ")[0] in BY_NAME for e in m["expected"]), "expected findings name real rules"
    assert not notes, "a recorded program has every value known"


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_exits_1_in_prod(name):
    _, path, _, _, _ = judged(name)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = analyze.main([str(path)])
    assert rc == 1, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_keeps_what_it_keeps(name):
    m, _, _, violations, _ = judged(name)
    for keep in m["keeps"]:
        hits = [v for v in violations if v["policy"] == keep["rule"] and
                (keep["resource"] is None or v["resource"] == keep["resource"])]
        assert not hits, f"{keep['rule']} must stay silent ({keep['why']}): {hits}"


@pytest.mark.parametrize("name", PROGRAMS)
def test_no_known_false_positives(name):
    _, _, resources, violations, _ = judged(name)
    allow = [v for v in violations if v["policy"] == "model-allow-list"]
    assert len(allow) == 1 and allow[0]["enforcement"] == "advisory", "no allow-list configured: one advisory"
    assert "no model allow-list is configured" in allow[0]["message"]
    stack = Stack(resources)
    by_name = {r.name: r for r in resources}
    for v in violations:
        if v["policy"] == "no-remote-admin-ports":
            sg = by_name[v["resource"]]
            assert sg.type in SG_TYPES and not _load_balancer_only(stack, sg)


def test_the_corpus_exercises_the_blind_spots_of_issue_11():
    found = {e.split(" @ ")[0] for n in PROGRAMS for e in meta(n)["expected"]}
    for rule in ("inference-api-authenticated", "server-install-pinned", "k8s-network-policy",
                 "no-plaintext-model-urls", "https-listeners", "sagemaker-endpoint-encrypted", "container-image-pinned",
                 "runtime-behind-auth-proxy", "no-cpu-inference-in-prod", "inference-alarms", "prod-multi-az"):
        assert rule in found, rule
    keeps = {k["rule"] for n in PROGRAMS for k in meta(n)["keeps"]}
    assert {"k8s-gpu-limits", "inference-api-authenticated", "k8s-network-policy"} <= keeps
