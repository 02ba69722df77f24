"""Config errors that name the key path as the user wrote it and say what to do."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

NAMESPACE = "llm-platform"
_MODEL_INDEX = re.compile(r"^(.*?models\[\d+\])")


@dataclass(frozen=True)
class ConfigError:
    path: str       # e.g. llm-platform:models[1].max_model_len
    message: str
    model: str | None = None     # the model entry's name when the problem is about one

    @property
    def where(self) -> str:
        """The path as people read it: llm-platform:models[2] (llama-8b).revision."""
        if self.model and _MODEL_INDEX.match(self.path):
            return _MODEL_INDEX.sub(lambda m: f"{m.group(1)} ({self.model})", self.path, count=1)
        return self.path

    def as_dict(self) -> dict[str, str]:
        out = {"path": self.path, "message": self.message}
        if self.model:
            out["model"] = self.model
        return out


class ConfigErrors(Exception):
    """One or more problems with a stack's configuration; nothing should be planned or created."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        self.raw: dict[str, Any] | None = None     # the config as read, when reading found problems but could go on
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{len(self.errors)} problem{'s' if len(self.errors) != 1 else ''} in the stack configuration:"]
        lines += [f"  {e.where}: {e.message}" for e in self.errors]
        return "\n".join(lines)


# Top-level keys whose config name differs from the schema's field name.
CONFIG_NAMES = {"region": "aws:region", "hf_token": f"{NAMESPACE}:hfToken",
                "docker_hub_token": f"{NAMESPACE}:dockerHubToken"}


def key_path(loc: tuple[str | int, ...]) -> str:
    """('models', 1, 'max_model_len') -> 'llm-platform:models[1].max_model_len'."""
    if not loc:
        return NAMESPACE
    head, rest = loc[0], loc[1:]
    out = CONFIG_NAMES.get(str(head), f"{NAMESPACE}:{head}")
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out
