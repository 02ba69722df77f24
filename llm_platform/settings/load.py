"""Read a stack's configuration, from a Pulumi.<stack>.yaml file or from the Pulumi runtime,
and turn it into a validated StackConfig, or a ConfigErrors listing every problem at once."""
from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from llm_platform import catalog

from .errors import NAMESPACE, ConfigError, ConfigErrors, key_path
from .images import credential_problem
from .schema import StackConfig

# config keys that must be set with `pulumi config set --secret`
SECRET_KEYS = {"hfToken": "hf_token", "dockerHubToken": "docker_hub_token"}

# Literals that are secrets whatever key they sit under. A stack file is committed to git.
SECRET_PATTERNS = {
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    # not after ':' or '/': "secret:" inside an ARN (arn:aws:secretsmanager:...:secret:name) is a name
    "an API key assignment": re.compile(r"(?i)(?<![:/])\b(api[_-]?key|token|password|secret)\s*[=:]\s*\S{12,}"),
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that records every mapping key written twice (plain YAML keeps the last one silently,
    so `precision: fp8` above a forgotten `precision: bf16` would plan bf16)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int]] = []     # (key path, line)
        self._paths: dict[int, str] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        if isinstance(node, yaml.MappingNode):
            here = self._paths.get(id(node), "")
            seen: set[str | None] = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                child = _join(here, key)
                if key is not None and key in seen:
                    self.duplicates.append((child, key_node.start_mark.line + 1))
                seen.add(key)
                self._mark(value_node, child)
        return super().construct_mapping(node, deep=deep)

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> list[Any]:
        here = self._paths.get(id(node), "")
        for i, item in enumerate(node.value):
            self._mark(item, f"{here}[{i}]")
        return super().construct_sequence(node, deep=deep)

    def _mark(self, node: yaml.Node, path: str) -> None:
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            self._paths[id(node)] = path


def _join(parent: str, key: str | None) -> str:
    if not parent:
        return str(key)
    return f"{parent}.{key}"


def _duplicate_path(path: str) -> str:
    """'config.llm-platform:models[1].precision' -> 'llm-platform:models[1].precision'."""
    return path.removeprefix("config.") if path.startswith("config.") else path


def read_stack_file(path: str | Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file. Unreadable files and keys written twice are ConfigErrors, not
    tracebacks or a silent last-one-wins."""
    p = Path(path)
    where = f"{p.name}"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([ConfigError(where, f"cannot read the stack file: {exc.strerror or exc}")]) from None
    loader = _UniqueKeyLoader(text)
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigErrors([ConfigError(where, f"not valid YAML{at}: {getattr(exc, 'problem', exc)}")]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        config = doc.get("config") if isinstance(doc, dict) else None
        dup = ConfigErrors(name_models([ConfigError(_duplicate_path(key), f"written twice in {p.name} (again at "
                                                    f"line {line}): YAML keeps only the last one; remove one of them")
                                        for key, line in loader.duplicates],
                                       (config or {}).get(f"{NAMESPACE}:models") if isinstance(config, dict) else None))
        dup.raw = config if isinstance(config, dict) else None      # read_and_parse reports its problems too
        raise dup
    if doc is None:
        doc = {}
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise ConfigErrors([ConfigError(where, "a stack file is a mapping with a `config:` mapping inside")])
    return doc.get("config") or {}


_MODEL_PATH = re.compile(r"^[^\[]*:models\[(\d+)\]")


def name_models(errors: list[ConfigError], models: Any) -> list[ConfigError]:
    """Every error about a model entry carries the entry's name (shown as models[2] (llama-8b).revision)."""
    if not isinstance(models, list):
        return errors
    out = []
    for e in errors:
        m = _MODEL_PATH.match(e.path)
        if m and e.model is None and int(m.group(1)) < len(models) and isinstance(models[int(m.group(1))], dict):
            name = models[int(m.group(1))].get("name")
            if isinstance(name, str) and name:
                e = ConfigError(e.path, e.message, model=name)
        out.append(e)
    return out


def parse(raw: dict[str, Any], secret_keys: Iterable[str] | None = None) -> StackConfig:
    """Validate a stack's raw config (namespaced keys, as in the stack file).

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
    models = data["models"] if isinstance(data.get("models"), list) else []
    images = data["images"] if isinstance(data.get("images"), dict) else {}
    context = {"environment": env, "catalog": catalog.load(), "platform": data.get("platform", "ec2"),
               "runtimes": {m.get("runtime", "vllm") for m in models if isinstance(m, dict)},
               "image_overrides": {k for k, v in images.items() if v}}
    try:
        config = StackConfig.model_validate(data, context=context)
    except ValidationError as exc:
        leaked = {e.path for e in leaks}   # a leaked credential is the one thing to say about that key
        listed: set[_Listed] = set()       # parents whose known keys were already listed once
        errors += [e for e in (_error(err, listed) for err in exc.errors()) if e.path not in leaked]
        config = None
    # checked here, with everything else, rather than when the program creates the cache rules
    problem = credential_problem(data.get("platform", "ec2"), images, context["runtimes"],
                                 bool(data.get("docker_hub_token")))
    if problem:
        errors.append(ConfigError(f"{NAMESPACE}:images.docker_hub_credential_arn", problem))
    if errors:
        raise ConfigErrors(name_models(errors, models))
    assert config is not None    # a ValidationError always adds to errors
    return config


def read_and_parse(path: str | Path) -> tuple[dict[str, Any], StackConfig]:
    """The stack file's raw config and its StackConfig; every problem of both steps in one ConfigErrors (a key
    written twice does not hide what else is wrong)."""
    try:
        raw = read_stack_file(path)
    except ConfigErrors as exc:
        errors = list(exc.errors)
        if exc.raw is not None:
            try:
                parse(exc.raw)
            except ConfigErrors as more:
                errors += more.errors
        raise ConfigErrors(errors) from None
    return raw, parse(raw)


def load_stack(path: str | Path) -> StackConfig:
    return read_and_parse(path)[1]


def _secret_literals(data: dict[str, Any]) -> list[ConfigError]:
    found: list[ConfigError] = []

    def walk(value: Any, loc: tuple[str | int, ...]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, loc + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, loc + (i,))
        elif isinstance(value, str):
            for what, pattern in SECRET_PATTERNS.items():
                if pattern.search(value):
                    found.append(ConfigError(key_path(loc), f"looks like {what} in plaintext: stack files are "
                                             "committed; "
                                             "keep credentials in `pulumi config set --secret` or Secrets Manager"))
                    break

    walk(data, ())
    return found


# a mapping whose known keys an error already listed: its model class and its key path without list indexes
_Listed = tuple[type[BaseModel] | None, tuple[str, ...]]


def _error(err: ErrorDetails, listed: set[_Listed]) -> ConfigError:
    loc, message = tuple(err["loc"]), _message(err, listed)
    if message.startswith("@"):           # raised for a sibling key: see schema.at()
        key, _, message = message[1:].partition(" ")
        loc = loc[:-1] + tuple(key.split("."))
    return ConfigError(key_path(loc), message)


def _message(err: ErrorDetails, listed: set[_Listed]) -> str:
    loc, kind, msg = err["loc"], err["type"], err["msg"]
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    parent, field = _schema_at(loc[:-1]), loc[-1] if loc else None
    if kind == "extra_forbidden":
        names = {v: k for k, v in SECRET_KEYS.items()} if parent is StackConfig else {}
        known = [names.get(f, f) for f in parent.model_fields if not (parent is StackConfig and f == "region")] \
            if parent else []
        close = difflib.get_close_matches(str(field), known, n=1, cutoff=0.6)
        message = f"unknown key {field!r}: " + (f"did you mean {close[0]!r}?" if close else
                                                "remove it or fix its spelling")
        where = (parent, tuple(p for p in loc[:-1] if not isinstance(p, int)))
        if known and where not in listed:   # the list once per kind of mapping, not under every misspelling
            listed.add(where)
            message += f" (known keys: {', '.join(known)})"
        return message
    hint = ""
    if parent is not None and isinstance(field, str) and field in parent.model_fields:
        hint = parent.model_fields[field].description or ""
    if kind == "missing":
        return "required: add it" + (f" ({hint})" if hint else "")
    got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], (dict, list)) else ""
    if kind == "string_pattern_mismatch" and hint:
        return f"{err['input']!r} is not valid here: {hint}"
    return f"{msg}{got}" + (f"; {field}: {hint}" if hint else "")


def _schema_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model class that holds the last key of `loc`, or None."""
    cls: Any = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        cls = _model_in(cls.model_fields[part].annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _model_in(annotation: object) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
