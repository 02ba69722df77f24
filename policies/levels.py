"""Write the policy pack config for an environment: every policy learns the environment and the levels
that differ from prod's are explicit, so the CLI judges a stack exactly as `policies.analyze` and plan.py do.

    python -m policies.levels dev > policies/config/dev.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies.core import ENVIRONMENTS  # noqa: E402
from policies.engine import environment_config  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in ENVIRONMENTS:
        print(f"usage: python -m policies.levels {{{'|'.join(ENVIRONMENTS)}}}", file=sys.stderr)
        return 2
    print(json.dumps(environment_config(argv[0]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
