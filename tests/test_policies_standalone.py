"""The pack runs on its own: copied out of this repository (as `pulumi policy publish` uploads it, or as another
team vendors it) it loads, serves the analyzer and judges programs without importing the project's catalog,
sizing or any other llm_platform module; the facts it carries equal the catalog's."""
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import analyzer_pb2_grpc

from llm_platform.policies import vendor
from llm_platform.policies.rules import ALL

ROOT = Path(__file__).resolve().parent.parent
FOREIGN = ROOT / "tests" / "data" / "foreign"

# Loads the copied directory as a package by its path, as policies/__main__.py does, then judges a program.
PROBE = r'''
import importlib, importlib.util, io, json, sys
from contextlib import redirect_stdout
from pathlib import Path
here = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("vendored_pack", here / "__init__.py",
                                              submodule_search_locations=[str(here)])
pack = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = pack
spec.loader.exec_module(pack)
crossguard = importlib.import_module("vendored_pack.crossguard")
analyze = importlib.import_module("vendored_pack.analyze")
out = io.StringIO()
with redirect_stdout(out):
    rc = analyze.main([sys.argv[2], "--json"])
print(json.dumps({"rc": rc, "policies": [p.name for p in crossguard.policies()],
                  "violations": [v["policy"] for v in json.loads(out.getvalue())["violations"]],
                  "project_modules": sorted(m for m in sys.modules if m.split(".")[0] == "llm_platform"),
                  "path": sys.path}))
'''


def copy_pack(tmp_path) -> Path:
    dest = tmp_path / "elsewhere" / "llm-guide-pack"
    shutil.copytree(ROOT / "policies", dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_vendored_facts_equal_the_catalog():
    assert (ROOT / "policies" / "data" / "facts.json").read_text() == vendor.render(vendor.build()), \
        "stale: run python -m llm_platform.policies.vendor"
    assert vendor.main(["--check"]) == 0


def test_pack_modules_import_nothing_from_the_project():
    """Absolute imports of the pack: the standard library, PyYAML and the Pulumi SDKs. llm_platform only in the
    generator of the vendored facts and in the guarded helper that reads plan.py's recordings; no sys.path edits."""
    stdlib = set(sys.stdlib_module_names)
    for path in (ROOT / "policies").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            for n in names:
                if n == "llm_platform":
                    assert path.name == "vendor.py" or (path.name == "offline.py" and node.module ==
                                                        "llm_platform.offline.mocks"), (path, ast.dump(node))
                else:
                    assert n in stdlib or n in ("yaml", "pulumi", "pulumi_policy"), (path, n)
            if isinstance(node, ast.Attribute) and node.attr in ("append", "insert", "extend") and \
                    isinstance(node.value, ast.Attribute) and node.value.attr == "path":
                raise AssertionError(f"{path}: edits sys.path")


def test_copied_pack_judges_a_program_without_the_project(tmp_path):
    pack = copy_pack(tmp_path)
    program = FOREIGN / "ana-mc-almeida-ollama-ec2" / "resources.json"
    p = subprocess.run([sys.executable, "-I", "-c", PROBE, str(pack), str(program)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["project_modules"] == [], "the copied pack imported the project"
    assert str(ROOT) not in report["path"] and "" not in report["path"]
    assert report["rc"] == 1
    assert {"runtime-behind-auth-proxy", "server-install-pinned", "no-cpu-inference-in-prod"} <= \
        set(report["violations"])
    assert report["policies"] == [r.name for r in ALL]


def test_copied_pack_serves_the_analyzer_like_pulumi_runs_it(tmp_path):
    """`pulumi preview --policy-pack DIR` runs DIR/__main__.py, reads the port it prints and talks gRPC to it."""
    pack = copy_pack(tmp_path)
    proc = subprocess.Popen([sys.executable, "-I", "-u", str(pack / "__main__.py")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().strip())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = analyzer_pb2_grpc.AnalyzerStub(channel).GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
        assert info.name == "llm-platform-guide"
        assert [p.name for p in info.policies] == [r.name for r in ALL]
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_pack_requirements_are_pinned_and_sufficient():
    reqs = [ln.split("#")[0].strip() for ln in (ROOT / "policies" / "requirements.txt").read_text().splitlines()]
    reqs = [r for r in reqs if r]
    assert reqs and all("==" in r for r in reqs), reqs
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"pulumi", "pulumi-policy", "pyyaml"} <= names
    assert "pydantic" not in names, "the pack no longer needs the catalog's pydantic models"
