"""Write the policy pack config for an environment: every policy learns the environment and the levels
that differ from prod's are explicit, so the CLI judges a stack exactly as `policies.analyze` and plan.py do.

    python -m policies.levels dev > policies/config/dev.json
    python -m policies.levels table          # the rule table of policies/README.md
"""
from __future__ import annotations

import json
import sys

from .core import ENVIRONMENTS
from .engine import environment_config


def table() -> str:
    """The README's rule table (markdown)."""
    from .rules import ALL
    rows = ["| rule | the guide's MUST it enforces | kind | dev | staging | prod | severity | config |",
            "|---|---|---|---|---|---|---|---|"]
    for r in ALL:
        cfg = ", ".join(f"`{k}`" for k in r.config) or "—"
        rows.append(f"| `{r.name}` | {r.must} | {r.kind} | {r.levels['dev']} | {r.levels['staging']} | "
                    f"{r.levels['prod']} | {r.severity} | {cfg} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["table"]:
        print(table())
        return 0
    if len(argv) != 1 or argv[0] not in ENVIRONMENTS:
        print(f"usage: python -m policies.levels {{{'|'.join(ENVIRONMENTS)}|table}}", file=sys.stderr)
        return 2
    print(json.dumps(environment_config(argv[0]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
