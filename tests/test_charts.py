"""Every pinned Helm chart exists at the pinned version, and every value we set is a key of that version's
values.yaml (key sets in tests/data/charts/, each with its source URL). Karpenter's NodePool and EC2NodeClass
objects validate against the CRD schemas of the pinned Karpenter (tests/data/charts/karpenter-*-crds.json)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from llm_platform import catalog
from llm_platform.catalog import charts
from llm_platform.components import karpenter
from llm_platform.settings import parse, read_stack_file
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "charts"
# maps whose keys are the user's (labels, selectors, annotations): any key below them is accepted
FREE_FORM = {"nodeSelector", "podAnnotations", "podLabels", "annotations", "labels", "additionalLabels",
             "additionalAnnotations", "resources", "requests", "limits"}


def keys_of(name: str, version: str) -> dict[str, str]:
    path = DATA / f"{name}-{version}.keys"
    assert path.exists(), f"no values.yaml key set for {name} {version}: verify the pin and extract its keys"
    lines = path.read_text().splitlines()
    assert lines[1].startswith("# source: https://github.com/"), f"{path.name} names no source"
    return dict(line.split("\t") for line in lines if line and not line.startswith("#"))


def unknown_values(values: dict, keys: dict[str, str], prefix: str = "") -> list[str]:
    """Paths we set that the chart's values.yaml does not have."""
    bad = []
    for k, v in values.items():
        path = f"{prefix}.{k}" if prefix else k
        kind = keys.get(path)
        if kind is None:
            bad.append(path)
        elif isinstance(v, dict) and kind == "map" and k not in FREE_FORM:
            bad += unknown_values(v, keys, path)
    return bad


def test_every_pin_has_a_verified_source_and_key_set():
    pins = charts.load()
    assert {"nvidia-device-plugin", "lws", "keda", "aws-load-balancer-controller", "karpenter",
            "karpenter-crd"} <= set(pins)
    for name, pin in pins.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", pin["version"]), name
        assert pin["version"] in pin["source"] and "github.com/" in pin["source"], name
        keys_of(name, pin["version"])


def test_keda_is_pinned_to_a_release_that_exists():
    """2.21.1 was never released (kedacore/charts has no such tag); 2.20.2 is the newest that was."""
    assert charts.load()["keda"]["version"] == "2.20.2"


def test_the_unknown_values_check_catches_a_typo():
    keys = keys_of("karpenter", "1.14.1")
    assert unknown_values({"settings": {"clusterName": "x", "interuptionQueue": "q"}}, keys) == [
        "settings.interuptionQueue"]
    assert unknown_values({"nodeSelector": {"any/label": "x"}}, keys) == []


def test_karpenter_controller_values_exist_in_its_chart():
    values = karpenter.controller_values("llm-eks", "llm-eks-karpenter", "https://x",
                                         {"llm-platform/node-pool": "system"})
    assert unknown_values(values, keys_of("karpenter", charts.load()["karpenter"]["version"])) == []


@pytest.fixture(scope="module")
def eks_plans():
    stack = parse(read_stack_file(ROOT / "Pulumi.eks.yaml"))
    return plan_stack(stack)


@pytest.fixture(scope="module")
def crds():
    return json.loads((DATA / f"karpenter-{charts.load()['karpenter']['version']}-crds.json").read_text())["schemas"]


def test_node_pools_validate_against_the_pinned_crd(eks_plans, crds):
    cat = catalog.load()
    counts = {k: v.gpu_count for k, v in cat.instances.items()}
    for p in eks_plans:
        doc = karpenter.node_pool(p, counts, p.startup.cold_seconds)
        jsonschema.validate(doc, crds["NodePool"])


def test_node_class_validates_against_the_pinned_crd(crds):
    doc = karpenter.node_class("llm-eks", "llm-eks-node", 200, "arn:aws:kms:us-east-1:123456789012:key/abc",
                               {"llm-platform:stack": "eks"})
    jsonschema.validate(doc, crds["EC2NodeClass"])


def test_the_crd_check_catches_a_wrong_field(crds):
    doc = karpenter.node_class("c", "r", 200, "k", {})
    doc["spec"]["metadataOptions"]["httpTokens"] = "sometimes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, crds["EC2NodeClass"])


def test_recorded_releases_set_only_values_their_chart_has(shipped_recordings):
    """Every Helm release of the eks stack, as the program records it, against its chart's values.yaml."""
    rec, _ = shipped_recordings["eks"]
    releases = rec.of_type("kubernetes:helm.sh/v3:Release")
    assert releases
    pins = charts.load()
    for r in releases:
        name = r.inputs["name"]
        assert r.inputs["version"] == pins[name]["version"], name
        values = r.inputs.get("values") or {}
        assert unknown_values(values, keys_of(name, pins[name]["version"])) == [], name


def test_key_sets_are_where_the_catalog_says(tmp_path):
    names = {p.name.rsplit("-", 1)[0] for p in Path(DATA).glob("*.keys")}
    assert names == set(charts.load())
