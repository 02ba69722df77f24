"""Judge a stack's state without the Pulumi CLI or cloud credentials.

    python -m policies.analyze FILE [--config POLICY_CONFIG] [--environment ENV] [--json]

FILE is a `pulumi stack export` document (from this program or any other; `-` reads stdin), a recorded
resource list ({"resources": [{"type", "name", "inputs"}]}) or a set of Kubernetes manifests (YAML).
POLICY_CONFIG is the JSON file `pulumi preview --policy-pack-config` takes (policies/config/*.json).
Runs every resource and stack rule of the pack with its levels. Exit 0: no mandatory violation;
1: at least one; 2: the file or the config cannot be read.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .core import ENVIRONMENTS, JSON
from .engine import ConfigError, evaluate, has_mandatory
from .offline import ExportError, load_document

EXIT_OK, EXIT_VIOLATIONS, EXIT_UNREADABLE = 0, 1, 2


def _read_json(path: str, what: str) -> Any:
    text = _read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{what} {path}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def _read_text(path: str, what: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise ExportError(f"{what} {path}: is a directory") from None
    except PermissionError:
        raise ExportError(f"{what} {path}: permission denied") from None
    except UnicodeDecodeError:
        raise ExportError(f"{what} {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ExportError(f"{what} {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise ExportError(f"{what} {path}: empty file")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m policies.analyze", description=__doc__.split("\n\n")[0])
    p.add_argument("file", metavar="FILE", help="a `pulumi stack export` JSON document, a recorded resource list "
                                                "or Kubernetes manifests ('-' for stdin)")
    p.add_argument("--config", metavar="POLICY_CONFIG", help="policy pack config JSON (as --policy-pack-config)")
    p.add_argument("--environment", choices=ENVIRONMENTS,
                   help="judge as this environment when the config does not say (default: prod)")
    p.add_argument("--json", action="store_true", help='print {"violations": [...]} on stdout')
    args = p.parse_args(argv)
    try:
        text = _read_text(args.file, "stack export")
        config = _read_json(args.config, "policy config") if args.config else None
        try:
            resources = load_document(text, args.file)
        except ExportError as exc:
            raise ExportError(f"stack export {args.file}: {exc}") from None
        violations, notes = evaluate(resources, config=config, environment=args.environment)
    except (ExportError, ConfigError) as exc:
        if args.json:
            print(json.dumps({"errors": [str(exc)]}, indent=2))
        print(f"policies.analyze: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.json:
        print(json.dumps({"violations": violations, "undetermined": notes}, indent=2))
    else:
        print(render(args.file, violations, notes))
    return EXIT_VIOLATIONS if has_mandatory(violations) else EXIT_OK


def render(path: str, violations: list[JSON], notes: list[JSON]) -> str:
    mandatory = [v for v in violations if v["enforcement"] == "mandatory"]
    out = [f"{path}: {len(mandatory)} mandatory, {len(violations) - len(mandatory)} advisory violation(s)"]
    for v in sorted(violations, key=lambda v: (v["enforcement"] != "mandatory", v["policy"], v["resource"] or "")):
        where = f"{v['resource']} ({v['type']})" if v["resource"] else "stack"
        out.append(f"  [{v['enforcement']}/{v['severity']}] {v['policy']}: {where}: {v['message']}")
    if notes:
        out.append(f"  {len(notes)} check(s) could not be decided (values unknown or secret):")
        out += [f"    {n['policy']}: {n['resource']}: {n['message']}" for n in notes]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
