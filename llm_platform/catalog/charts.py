"""The Helm charts the eks platform installs, pinned with their sources (catalog/charts.yaml)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PATH = Path(__file__).with_name("charts.yaml")


@lru_cache(maxsize=1)
def load() -> dict[str, dict[str, Any]]:
    """chart key -> {repo, chart, version, namespace, source}."""
    with PATH.open() as fh:
        charts: dict[str, dict[str, Any]] = yaml.safe_load(fh)["charts"]
    return charts
