"""Read the stack's configuration from the Pulumi runtime (what `pulumi up` passes the program)."""
from __future__ import annotations

import json
from typing import Any

from pulumi.runtime import config as runtime_config

from llm_platform import settings


def raw_config() -> tuple[dict[str, Any], list[str]]:
    """Every config key the engine passed, objects decoded from JSON, and the secret keys."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    out: dict[str, Any] = {}
    for key, value in merged.items():
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass    # left as the string; the schema reports its type
        out[key] = value
    secret = (set(runtime_config.get_config_secret_keys_env())
              | {k for k in merged if runtime_config.is_config_secret(k)})
    return out, sorted(secret)


def load() -> settings.StackConfig:
    raw, secret_keys = raw_config()
    return settings.parse(raw, secret_keys)
