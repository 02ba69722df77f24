"""The text plan as a PR comment, and --sizing-only: what a reviewer reads first, in how many lines."""
import json
import re
import subprocess
import sys

import pytest

import plan
from tests.conftest import ROOT, plan_output
from tests.test_plan_cli import validate

LINE_BUDGET = 90


@pytest.fixture(scope="module")
def prod_text():
    code, out, err = plan_output("--stack", "prod")
    assert code == 0, err
    return out


def outside_details(text: str) -> list[str]:
    return re.sub(r"<details>.*?</details>", "", text, flags=re.S).rstrip().splitlines()


def test_the_prod_plan_opens_with_a_verdict_and_fits_the_line_budget(prod_text):
    first = prod_text.splitlines()[0]
    assert re.fullmatch(r"\S+ \*\*0 mandatory, \d+ advisory · \$[\d,]+\.\d\d/month \(up to \$[\d,.]+ at autoscaling "
                        r"max\)\*\*", first), first
    assert len(outside_details(prod_text)) <= LINE_BUDGET
    for section in ("### Deployments", "### Throughput", "### Choices", "### Pins and provenance", "### Notes",
                    "### Policy findings"):
        assert section in prod_text
    # sections in the order a reviewer reads them; the resource tree last, folded
    order = [prod_text.index(s) for s in ("### Deployments", "### Throughput", "### Pins", "<details>")]
    assert order == sorted(order)


def test_pins_and_provenance_show_every_prod_model(prod_text):
    pins = prod_text.split("### Pins and provenance")[1].split("###")[0]
    for name, rev in (("llama-70b", "1605565b47bb"), ("qwen-coder-32b", "381fc969f78e"), ("llama-8b", "0e9e39f249a1"),
                      ("nomic-embed", "e5cf08aadaa3")):
        row = next(line for line in pins.splitlines() if f"**{name}**" in line)
        assert rev in row and "approved" in row and "ai-security-review@example.com" in row


def test_the_resource_tree_is_folded_and_counts_types_per_component(prod_text):
    details = prod_text.split("<details>")[1]
    assert "<summary>Resources: " in details and "by component" in details
    assert re.search(r"\n  ModelDeployment \S*llama-8b\n", details)
    assert re.search(r"\n    GpuInstanceGroup \S*llama-8b-fleet\n", details)
    assert "autoscaling.Group x 1" in details and "ec2.VpcEndpoint x " in details
    assert "aws:ec2/launchTemplate:LaunchTemplate" not in details       # no full type tokens


def test_replicas_read_as_needs_running_max_never_as_a_contradiction(prod_text):
    row = next(line for line in prod_text.split("### Throughput")[1].splitlines() if "**llama-8b**" in line)
    assert "1 · 2 (HA minimum) · 3" in row
    assert "replicas for load" not in prod_text


def test_choices_name_the_runner_up_and_list_three_alternatives_per_model(prod_text):
    choices = prod_text.split("### Choices")[1].split("### Pins")[0]
    for name in ("llama-70b", "qwen-coder-32b", "llama-8b", "nomic-embed"):
        assert re.search(rf"- \*\*{name}\*\*: .*runner-up \d+ x \S+", choices), name
        rows = [line for line in choices.splitlines() if line.startswith(f"| **{name}** |")
                or line.startswith(f"| {name} |")]
        assert len(rows) == 3 and "(chosen)" in rows[0]


def test_the_local_plan_shows_no_region_and_no_cloud_prices(capsys):
    code = plan.main(["--stack", "local"])
    out = capsys.readouterr().out
    assert code == 0
    visible = "\n".join(outside_details(out))
    assert "region" not in visible and "$" not in visible and "us-east-1" not in visible
    assert "no cloud cost" in visible.splitlines()[0] and "1 x L4" in visible


def test_sizing_only_never_imports_pulumi_and_keeps_the_contract():
    code = ("import runpy, sys\n"
            "sys.argv = ['plan.py', '--stack', 'prod', '--sizing-only', '--json']\n"
            "try:\n    runpy.run_path('plan.py', run_name='__main__')\n"
            "except SystemExit as exc:\n    rc = exc.code\n"
            "print('PULUMI-LOADED' if any(m == 'pulumi' or m.startswith('pulumi.') for m in sys.modules) "
            "else 'NO-PULUMI', rc, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "NO-PULUMI 0" in proc.stderr, proc.stderr
    body = json.loads(proc.stdout)
    validate(body)
    assert body["sizing_only"] is True and "resources" not in body and "violations" not in body
    assert [d["name"] for d in body["deployments"]] == ["llama-70b", "qwen-coder-32b", "llama-8b", "nomic-embed"]
    assert all(d["alternatives"] and d["choice"]["reason"] for d in body["deployments"])


def test_sizing_only_text_says_what_it_left_out_and_has_the_same_cost(capsys):
    assert plan.main(["--stack", "prod", "--sizing-only"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("📐 **sizing only: resources and policies not evaluated · $")
    assert "<details>" not in text and "### Policy findings" not in text
    assert plan.main(["--stack", "prod", "--sizing-only", "--json"]) == 0
    sized = json.loads(capsys.readouterr().out)
    assert f"${sized['monthly_cost_usd']:,.2f}/month" in text.splitlines()[0]


def test_every_shipped_stack_json_validates_with_choice_alternatives_and_verdict(capsys):
    for stack in ("dev", "local"):
        assert plan.main(["--stack", stack, "--json"]) == 0
        body = json.loads(capsys.readouterr().out)
        validate(body)
        assert body["verdict"]["mandatory"] == 0
        assert (body["region"] is None) == (stack == "local")


def test_make_targets_that_print_json_print_only_json():
    proc = subprocess.run(["make", "--no-print-directory", "size-json", "STACK=prod"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stack"] == "prod"            # no echoed command before the object
    recipes = {}
    target = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line and not line.startswith(("\t", "#", " ")) and ":" in line:
            target = line.split(":")[0]
        elif line.startswith("\t") and target:
            recipes.setdefault(target, []).append(line.strip())
    for t in ("plan-json", "size-json", "catalog"):
        assert all(r.startswith("@") for r in recipes[t]), t
    installing = recipes["$(VENV)/.installed"]
    assert any("First run" in r and r.startswith("@echo") for r in installing)


def test_findings_are_grouped_per_policy_and_stack_level_ones_have_no_resource():
    from llm_platform.report import _violations
    lines = _violations([
        {"policy": "p-mandatory", "enforcement": "mandatory", "resource": "a", "message": "bad"},
        {"policy": "p-advisory", "enforcement": "advisory", "resource": "x", "message": "same"},
        {"policy": "p-advisory", "enforcement": "advisory", "resource": "y", "message": "same"},
        {"policy": "p-stack", "enforcement": "advisory", "resource": None, "message": "about the whole stack"}])
    body = [line for line in lines if line.startswith("- ")]
    assert body[0].startswith("- **p-mandatory** (mandatory, 1)")            # mandatory first
    assert "- **p-advisory** (advisory, 2): same (`x`, `y`)" in body
    assert "- **p-stack** (advisory, 1): about the whole stack" in body
