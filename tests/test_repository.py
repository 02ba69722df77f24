"""The repository stands alone on a fresh clone, and the package is wired the way its docs say."""
import ast
import re
import subprocess
import tomllib

from tests.conftest import ROOT

TRACKED = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
PY_FILES = [ROOT / f for f in TRACKED if f.endswith(".py")]
MARKDOWN = [ROOT / f for f in TRACKED if f.endswith(".md")]


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_file_points_outside_the_clone():
    # ../shared is the developers' workspace, never the product's: a fresh clone has no such folder
    offenders = [f for f in TRACKED if (ROOT / f).is_file() and not f.startswith("tests/test_repository.py")
                 and "../shared" in (ROOT / f).read_text(encoding="utf-8", errors="ignore")]
    assert offenders == []


def test_markdown_links_inside_the_repository_resolve():
    broken = []
    for md in MARKDOWN:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):      # http(s), mailto: outside links are not checked offline
                continue
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_no_module_outside_tests_imports_tests_and_nothing_edits_sys_path():
    product = [p for p in PY_FILES if not p.relative_to(ROOT).parts[0] == "tests"]
    assert product, "no product modules found"
    importers = [str(p.relative_to(ROOT)) for p in product
                 if any(m == "tests" or m.startswith("tests.") for m in imported_modules(p))]
    assert importers == []
    path_edits = [str(p.relative_to(ROOT)) for p in PY_FILES
                  if re.search(r"sys\.path\.(insert|append)|sys\.path\s*\+?=", p.read_text(encoding="utf-8"))]
    assert path_edits == []


def test_pure_layers_import_no_pulumi():
    pure = ("catalog", "settings", "sizing", "serving")
    offenders = []
    for layer in pure:
        for p in (ROOT / "llm_platform" / layer).rglob("*.py"):
            if any(m == "pulumi" or m.startswith(("pulumi.", "pulumi_")) for m in imported_modules(p)):
                offenders.append(str(p.relative_to(ROOT)))
    assert offenders == []


def test_lower_layers_never_import_higher_ones():
    order = ["catalog", "settings", "sizing", "serving", "components", "program"]
    offenders = []
    for i, layer in enumerate(order):
        higher = tuple(f"llm_platform.{h}" for h in order[i + 1:])
        base = ROOT / "llm_platform" / layer if layer not in ("components",) else ROOT / "components"
        for p in base.rglob("*.py"):
            bad = {m for m in imported_modules(p) if m.startswith(higher)}
            if bad:
                offenders.append(f"{p.relative_to(ROOT)} imports {sorted(bad)}")
    assert offenders == []


def test_package_dependencies_are_the_pinned_requirements():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {d.lower() for d in pyproject["project"]["dependencies"]}
    pins = {line.strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith(("#", "-"))}
    assert all("==" in d for d in declared), "every runtime dependency is pinned"
    # the program's runtime pins are all package dependencies (the policy SDK is one too: plan.py judges with it)
    assert pins <= declared
    assert "-e ." in (ROOT / "requirements.txt").read_text(), "the Pulumi venv installs the project itself"


def test_every_subpackage_is_declared_for_the_wheel():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = set(pyproject["tool"]["setuptools"]["packages"])
    dirs = pyproject["tool"]["setuptools"]["package-dir"]
    found = set()
    for package, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if ".venv" in rel.parts or "venv" in rel.parts or "tests" in rel.parts:
                continue
            found.add(".".join([package, *rel.parts]))
    assert found - declared == set(), "a subpackage missing from [tool.setuptools].packages is left out of the wheel"
