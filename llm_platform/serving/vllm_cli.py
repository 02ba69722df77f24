"""Check a `vllm serve` command line against the pinned vLLM release's own argument definitions. Pure.

The definitions are a dump of the real parser of the pinned release (catalog/vllm_serve_args.json,
made by catalog/refresh_vllm_args.py from the wheel). This rebuilds an argparse parser with the
same spellings, arities and choices (no abbreviations: vLLM's FlexibleArgumentParser refuses none,
but a flag that only works abbreviated is a typo waiting to break on the next release), and converts
each value the way the real type does (int, float, JSON), plus the value sets vLLM checks after
argparse (quantization methods, executor backends). Multi-node rules vLLM enforces when it builds
its engine config (vllm/engine/arg_utils.py, vllm/config/parallel.py of the same release) are
checked too, so a 405B LeaderWorkerSet that would die at start fails here instead.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

DUMP = Path(__file__).resolve().parents[1] / "catalog" / "vllm_serve_args.json"


class VllmArgError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:          # argparse would print usage and exit
        raise VllmArgError(message)


def _json(text: str) -> Any:
    return json.loads(text)


def _json_or_str(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _int_or_auto(text: str) -> int | str:
    return text if text == "auto" else int(text)


_CONVERT: dict[str, Callable[[str], Any]] = {
    "int": int, "float": float, "json": _json, "json-or-str": _json_or_str, "int-or-auto": _int_or_auto,
    "str": str, "choice": str}


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DUMP.read_text())
    return data


@lru_cache(maxsize=1)
def parser() -> argparse.ArgumentParser:
    dump = load()
    p = _Parser(prog="vllm serve", allow_abbrev=False, add_help=False)
    for pos in dump["positionals"]:
        p.add_argument(pos["dest"], nargs=pos["nargs"])
    for opt in dump["options"]:
        if opt["kind"] == "flag":
            # BooleanOptionalAction pairs: --x sets True, --no-x False; None means "not given"
            yes = [f for f in opt["flags"] if not f.startswith("--no-")]
            no = [f for f in opt["flags"] if f.startswith("--no-")]
            p.add_argument(*yes, dest=opt["dest"], action="store_const", const=True, default=None)
            if no:
                p.add_argument(*no, dest=opt["dest"], action="store_const", const=False, default=None)
        else:
            p.add_argument(*opt["flags"], dest=opt["dest"], nargs=opt["nargs"], choices=opt.get("choices"),
                           type=_CONVERT[opt["kind"]])
    return p


def parse(args: list[str]) -> argparse.Namespace:
    """`args`: what follows `vllm serve`. Raises VllmArgError naming the first problem."""
    ns = parser().parse_args(args)
    # vLLM's defaults, applied after parsing (argparse would run a string default through the type)
    for opt in load()["options"]:
        if getattr(ns, opt["dest"]) is None and opt.get("default") is not None:
            setattr(ns, opt["dest"], opt["default"])
    domains = load()["value_domains"]
    if ns.quantization is not None and ns.quantization not in domains["quantization"]:
        raise VllmArgError(f"--quantization {ns.quantization}: not a quantization method of vLLM "
                           f"{load()['vllm_version']}")
    backend = ns.distributed_executor_backend
    if backend is not None and backend not in domains["distributed_executor_backend"]:
        raise VllmArgError(f"--distributed-executor-backend {backend}: not one of "
                           f"{domains['distributed_executor_backend']}")
    if ns.nnodes > 1:
        world = ns.tensor_parallel_size * ns.pipeline_parallel_size
        if backend not in ("mp", "uni", "external_launcher"):
            # parallel.py: "nnodes > 1 can only be set when distributed executor backend is mp, uni or ..."
            raise VllmArgError(f"--nnodes {ns.nnodes} needs --distributed-executor-backend mp (got {backend})")
        if world % ns.nnodes:
            raise VllmArgError(f"--nnodes {ns.nnodes} must divide the world size TP x PP = {world}")
        rank = ns.node_rank
        if isinstance(rank, int) and not 0 <= rank < ns.nnodes:
            raise VllmArgError(f"--node-rank {rank} outside 0..{ns.nnodes - 1}")
        if rank != 0 and not ns.headless:
            raise VllmArgError("a worker node (--node-rank > 0) must run --headless (it serves no API)")
    return ns
