"""Read a stack's configuration, from a Pulumi.<stack>.yaml file or from the Pulumi runtime,
and turn it into a validated StackConfig, or a ConfigErrors listing every problem at once."""
from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml
from pydantic import BaseModel, ValidationError

from llm_platform import catalog
from .errors import NAMESPACE, ConfigError, ConfigErrors, key_path
from .schema import StackConfig

SECRET_KEYS = {"hfToken": "hf_token", "dockerHubToken": "docker_hub_token"}   # config keys that must be set with `pulumi config set --secret`

# Literals that are secrets whatever key they sit under. A stack file is committed to git.
SECRET_PATTERNS = {
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    # not after ':' or '/': "secret:" inside an ARN (arn:aws:secretsmanager:...:secret:name) is a name
    "an API key assignment": re.compile(r"(?i)(?<![:/])\b(api[_-]?key|token|password|secret)\s*[=:]\s*\S{12,}"),
}


def read_stack_file(path: str | Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file. Unreadable files are ConfigErrors, not tracebacks."""
    p = Path(path)
    where = f"{p.name}"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([ConfigError(where, f"cannot read the stack file: {exc.strerror or exc}")]) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigErrors([ConfigError(where, f"not valid YAML{at}: {getattr(exc, 'problem', exc)}")]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise ConfigErrors([ConfigError(where, "a stack file is a mapping with a `config:` mapping inside")])
    return doc.get("config") or {}


def parse(raw: dict[str, Any], secret_keys: Optional[Iterable[str]] = None,
          base_dir: Optional[str | Path] = None) -> StackConfig:
    """Validate a stack's raw config (namespaced keys, as in the stack file).

    `base_dir` is where relative paths in the config (models[].architecture_file) start: the stack
    file's directory; default the working directory (the Pulumi project's, under the runtime).

    Values written `{secure: ...}` in a stack file are encrypted secrets; under the Pulumi
    runtime, values arrive decrypted and `secret_keys` names those that were set as secrets.
    """
    secret_keys = set(secret_keys or ())
    errors: list[ConfigError] = []
    data: dict[str, Any] = {}
    for full_key, value in raw.items():
        ns, _, key = full_key.rpartition(":")
        ns = ns or NAMESPACE
        if full_key == "aws:region":
            data["region"] = value
            continue
        if ns != NAMESPACE:
            continue   # provider settings (aws:*, kubernetes:*, pulumi:*) are not ours to judge
        is_secret = (isinstance(value, dict) and set(value) == {"secure"}) or full_key in secret_keys
        if key in SECRET_KEYS:
            if not is_secret:
                errors.append(ConfigError(f"{NAMESPACE}:{key}", "is in plaintext in the stack file: remove it and run "
                                          f"`pulumi config set --secret {key} <value>`"))
            data[SECRET_KEYS[key]] = True
            continue
        if is_secret:
            errors.append(ConfigError(f"{NAMESPACE}:{key}", "only hfToken may be a secret; this key holds no "
                                      "credential: set it in plain text"))
            continue
        data[key] = value
    leaks = _secret_literals(data)
    errors += leaks
    env = data.get("environment") if data.get("environment") in ("dev", "staging", "prod") else None
    models = data.get("models") if isinstance(data.get("models"), list) else []
    images = data.get("images") if isinstance(data.get("images"), dict) else {}
    context = {"environment": env, "catalog": catalog.load(), "platform": data.get("platform", "ec2"),
               "runtimes": {m.get("runtime", "vllm") for m in models if isinstance(m, dict)},
               "image_overrides": {k for k, v in images.items() if v}, "base_dir": base_dir}
    try:
        config = StackConfig.model_validate(data, context=context)
    except ValidationError as exc:
        leaked = {e.path for e in leaks}   # a leaked credential is the one thing to say about that key
        errors += [e for e in map(_error, exc.errors()) if e.path not in leaked]
        config = None
    if errors:
        raise ConfigErrors(errors)
    return config


def absolute_paths(raw: dict[str, Any], base_dir: str | Path) -> dict[str, Any]:
    """The raw config with relative file paths (models[].architecture_file) made absolute from `base_dir`,
    so it means the same wherever it is validated next (the program runs in the project directory)."""
    models = raw.get(f"{NAMESPACE}:models")
    if not isinstance(models, list):
        return raw
    fixed = [dict(m, architecture_file=str(Path(base_dir) / m["architecture_file"]))
             if isinstance(m, dict) and isinstance(m.get("architecture_file"), str) else m for m in models]
    return {**raw, f"{NAMESPACE}:models": fixed}


def load_stack(path: str | Path) -> StackConfig:
    return parse(read_stack_file(path), base_dir=Path(path).parent)


def _secret_literals(data: dict[str, Any]) -> list[ConfigError]:
    found = []

    def walk(value, loc):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, loc + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, loc + (i,))
        elif isinstance(value, str):
            for what, pattern in SECRET_PATTERNS.items():
                if pattern.search(value):
                    found.append(ConfigError(key_path(loc), f"looks like {what} in plaintext: stack files are committed; "
                                             "keep credentials in `pulumi config set --secret` or Secrets Manager"))
                    break

    walk(data, ())
    return found


def _error(err: dict) -> ConfigError:
    loc, message = tuple(err["loc"]), _message(err)
    if message.startswith("@"):           # raised for a sibling key: see schema.at()
        key, _, message = message[1:].partition(" ")
        loc = loc[:-1] + tuple(key.split("."))
    return ConfigError(key_path(loc), message)


def _message(err: dict) -> str:
    loc, kind, msg = err["loc"], err["type"], err["msg"]
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    parent, field = _schema_at(loc[:-1]), loc[-1] if loc else None
    if kind == "extra_forbidden":
        names = {v: k for k, v in SECRET_KEYS.items()} if parent is StackConfig else {}
        known = ", ".join(names.get(f, f) for f in parent.model_fields if not (parent is StackConfig and f == "region")) \
            if parent else ""
        return f"unknown key {field!r}: remove it or fix its spelling" + (f" (known keys: {known})" if known else "")
    hint = ""
    if parent is not None and isinstance(field, str) and field in parent.model_fields:
        hint = parent.model_fields[field].description or ""
    if kind == "missing":
        return "required: add it" + (f" ({hint})" if hint else "")
    got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], (dict, list)) else ""
    if kind == "string_pattern_mismatch" and hint:
        return f"{err['input']!r} is not valid here: {hint}"
    return f"{msg}{got}" + (f"; {field}: {hint}" if hint else "")


def _schema_at(loc: tuple) -> Optional[type[BaseModel]]:
    """The pydantic model class that holds the last key of `loc`, or None."""
    cls: Any = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        cls = _model_in(cls.model_fields[part].annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _model_in(annotation) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
