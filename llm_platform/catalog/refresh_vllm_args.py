"""Dump the argument definitions of `vllm serve` from the pinned vLLM release's own parser.

The pinned image (images.yaml: vllm/vllm-openai:<tag>) runs `vllm serve`; its flags are whatever
`vllm.entrypoints.launchers.cli_args.make_arg_parser` registers in that release. This builds that
parser for real and writes every option it accepts (spellings, whether it takes a value, argparse
choices, the value's kind) to vllm_serve_args.json, with the wheel's name and SHA-256. Tests then
check every command line the platform generates against the dump (llm_platform/serving/vllm_cli.py)
with no vLLM installed; test_vllm_cli.py fails when the dump's version is not the pinned image tag.

Regenerate in a throwaway virtualenv (the wheel is ~320 MB; the parser needs torch and the light
Python dependencies, not CUDA; VLLM_TARGET_DEVICE=cpu lets it build without a GPU):

    python3 -m venv /tmp/vllmenv && /tmp/vllmenv/bin/pip install --no-deps vllm==<tag> torch==<its pin>
    /tmp/vllmenv/bin/pip install <vllm's pure-Python requirements>    # import errors name what is missing
    VLLM_TARGET_DEVICE=cpu /tmp/vllmenv/bin/python llm_platform/catalog/refresh_vllm_args.py <wheel> \\
        > llm_platform/catalog/vllm_serve_args.json

It imports nothing from llm_platform, so it runs in that environment as a plain script.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
from typing import Any, get_args


def _kind(action: argparse.Action) -> str:
    """How the parser converts the value: probed on the real type callable, not guessed from names."""
    if action.nargs == 0:
        return "flag"
    if action.choices:
        return "choice"
    conv = action.type
    if conv is None or isinstance(conv, str):   # a type-registry name: calling it failed on every value, so "str"
        return "str"

    def ok(text: str) -> tuple[bool, Any]:
        try:
            return True, conv(text)
        except Exception:          # noqa: BLE001 - argparse treats any conversion error as a bad value
            return False, None

    good_json, val = ok('{"a": 1}')
    if good_json and isinstance(val, dict):
        return "json-or-str" if ok("plain")[0] else "json"
    good_int, val = ok("7")
    if good_int and val == 7 and not ok("x")[0]:
        if ok("auto")[0]:
            return "int-or-auto"
        return "float" if ok("0.5")[0] else "int"
    return "str"


def dump(wheel: str) -> dict[str, Any]:
    from vllm import __version__
    from vllm.config.parallel import DistributedExecutorBackend
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    options: list[dict[str, Any]] = []
    positionals: list[dict[str, Any]] = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        row = {"flags": list(a.option_strings), "dest": a.dest, "kind": _kind(a),
               "nargs": a.nargs if a.nargs not in (None, 0) else None}
        if a.choices:
            row["choices"] = sorted(str(c) for c in a.choices)
        try:                                    # defaults matter to later checks (e.g. TP x PP / nnodes)
            json.dumps(a.default)
            row["default"] = a.default
        except TypeError:
            pass
        (options if a.option_strings else positionals).append(row)
    with open(wheel, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return {
        "vllm_version": __version__,
        "source": {"wheel": os.path.basename(wheel), "sha256": digest,
                   "url": f"https://pypi.org/project/vllm/{__version__}/#files",
                   "parser": "vllm.entrypoints.launchers.cli_args.make_arg_parser(FlexibleArgumentParser())"},
        "generated": datetime.date.today().isoformat(),
        # values checked later than argparse (config validation), needed to judge our values
        "value_domains": {"quantization": sorted(QUANTIZATION_METHODS),
                          "distributed_executor_backend": sorted(get_args(DistributedExecutorBackend))},
        "positionals": positionals,
        "options": sorted(options, key=lambda r: r["flags"][0]),
    }


if __name__ == "__main__":
    json.dump(dump(sys.argv[1]), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
