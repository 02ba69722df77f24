"""The `llm-platform` command (also `python -m llm_platform`).

  llm-platform model inspect CONFIG_OR_DIR [--context N] [--concurrency N] [--json]
      what a config.json (or a registry model id) means for sizing: the parsed architecture, parameters,
      weights per precision, KV bytes per token, and the cheapest catalog instance per precision
  llm-platform stage --model ORG/NAME --revision COMMIT --store s3://bucket[/prefix] [--kms-key-id KEY]
  llm-platform stage --ollama MODEL:TAG --revision sha256:DIGEST --store s3://bucket[/prefix]
      download, verify, upload to the air-gapped model store, print the stack config snippet

Errors are one message naming what to fix (exit 1); usage errors exit 2. No traceback for bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-platform", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="inspect a model's sizing").add_subparsers(dest="action", required=True)
    insp = model.add_parser("inspect", help="architecture, parameters, weights, KV cache and the instance it needs")
    insp.add_argument("source", metavar="CONFIG_OR_DIR", help="a config.json, a directory holding one, or a model id "
                                                              "of the registry")
    insp.add_argument("--context", type=int, help="max_model_len in tokens (default: min(8192, the context window))")
    insp.add_argument("--concurrency", type=int, default=None, help="sequences at full context (default 8)")
    insp.add_argument("--json", action="store_true", help="machine-readable output")

    st = sub.add_parser("stage", help="stage a pinned model into the model store (run on a connected machine)")
    src = st.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="Hugging Face repository id, ORG/NAME")
    src.add_argument("--ollama", metavar="MODEL:TAG", help="an Ollama model (registry layout, manifest digest)")
    st.add_argument("--revision", required=True, help="40-hex commit (Hub) or sha256:<manifest digest> (Ollama)")
    st.add_argument("--store", required=True, help="s3://<model store bucket>[/<prefix>]")
    st.add_argument("--kms-key-id", help="the stack's KMS key (id, ARN or alias) for SSE-KMS; default: the bucket's")
    st.add_argument("--name", help="deployment name (models[].name); default from the repository name")
    st.add_argument("--code-revision", action="append", default=[], metavar="ORG/REPO=COMMIT",
                    help="pin the commit of another repository whose code config.json's auto_map loads")
    st.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                    help="leave out files of the commit matching GLOB, e.g. 'original/*' (Llama's duplicate "
                         "Meta-format weights); repeatable")
    st.add_argument("--hf-model", dest="hf_model", help="with --ollama: the Hugging Face id the model is built from")
    st.add_argument("--workdir", type=Path, help="local download directory, new or from an earlier run of the same "
                    "revision (default ./llm-staging/<name>/<revision>)")
    st.add_argument("--config-dir", type=Path, default=Path("."), help="where models/<name>/config.json is written "
                    "for architecture_file (default: the current directory, beside the stack files)")
    st.add_argument("--endpoint-url", help="S3 endpoint URL (a VPC interface endpoint or an S3-compatible store)")
    st.add_argument("--region", help="AWS region of the bucket (default: the AWS configuration's)")
    st.add_argument("--no-progress", action="store_true", help="no progress bar")

    args = parser.parse_args(argv)
    try:
        if args.command == "model":
            return _inspect(args)
        return _stage(args)
    except KeyboardInterrupt:
        print("interrupted: the manifest was not uploaded, so the revision is not marked complete; run the same "
              "command again to resume", file=sys.stderr)
        return 130


# ----------------------------------------------------------------------------- model inspect

def _inspect(args) -> int:
    from llm_platform import catalog
    from llm_platform.catalog import hf_config
    from llm_platform.catalog.checkpoint import QuantizationSpec
    from llm_platform.settings.schema import ModelSpec
    from llm_platform.sizing.memory import (
        GIB,
        Workload,
        kv_bytes_per_token_per_layer,
        kv_tokens_per_layer,
        weight_bytes,
    )
    from llm_platform.sizing.params import active_parameter_count, parameter_count
    from llm_platform.sizing.planner import cheapest

    cat = catalog.load()
    notes: list[str] = []
    path = Path(args.source)
    if path.exists():
        try:
            model = hf_config.from_config(hf_config.load_file(path), source=str(path))
        except hf_config.HfConfigError as exc:
            return _fail(f"{path}: {exc}")
        arch, name, checkpoint, notes = model.architecture, model.name, model.precision, list(model.notes)
        quant = model.quantization.quant_method if model.quantization else None
        layout = None
        if model.quantization is not None and cat.precisions[checkpoint].kind != "float":
            try:        # the checkpoint's own layout (modules kept in 16 bit, scale blocks), as the planner weighs it
                layout = QuantizationSpec.from_quantization_config(model.quantization.raw, str(path)).layout()
            except ValueError:
                layout = None
    elif args.source in cat.models:
        entry = cat.models[args.source]
        arch, name, checkpoint, quant, layout = entry.architecture, args.source, "bf16", None, None
        if entry.quantization is not None:
            q = entry.quantization
            kind = q.precision_kind() or "fp8"
            checkpoint = "fp8" if kind == "fp8" else ("gptq" if q.quant_method == "gptq" else "awq")
            quant, layout = q.quant_method, q.layout()
    else:
        return _fail(f"{args.source}: no such file or directory, and not a model of the registry "
                     f"({', '.join(sorted(cat.models))})")
    fields = ModelSpec.model_fields
    window = arch.max_position_embeddings
    context = args.context or min(fields["max_model_len"].default or 8192, window)
    concurrency = args.concurrency or fields["concurrency"].default
    if context < 1 or context > window:
        return _fail(f"--context {context}: the model's context window is {window} tokens")
    if concurrency < 1:
        return _fail("--concurrency must be at least 1")
    embed = arch.task == "embed"
    chunk = fields["max_num_batched_tokens"].default
    if embed:
        chunk = max(chunk, context)      # an embedder prefills a whole input at once
    per_token = {k: kv_bytes_per_token_per_layer(arch, d.bytes) * arch.num_hidden_layers
                 for k, d in cat.kv_dtypes.items() if k in ("auto", "fp8")}
    rows = []
    for p, spec in cat.precisions.items():
        if quant and spec.kind != "gguf" and p != checkpoint:
            continue            # a pre-quantised checkpoint is served as it is
        runtime = "ollama" if spec.kind == "gguf" else "vllm"
        own = layout if p == checkpoint else None
        w = Workload(runtime=runtime, precision=p, kv_cache_dtype="auto", max_model_len=context,
                     concurrency=concurrency, max_num_batched_tokens=chunk,
                     gpu_memory_utilization=fields["gpu_memory_utilization"].default, quant_layout=own)
        best = cheapest(arch, w, "ec2", None, cat)
        rows.append({"precision": p, "runtime": runtime, "weights_gib": round(weight_bytes(arch, p, own) / GIB, 2),
                     "instance_type": best.instance.name if best else None,
                     "gpus": best.layout.gpus if best else None,
                     "tensor_parallel": best.layout.tensor_parallel if best and runtime == "vllm" else None,
                     "hourly_usd": round(best.hourly_usd, 4) if best else None,
                     "per_gpu_required_gib": round(best.memory.per_gpu_required_gib, 2) if best else None})
    kept = kv_tokens_per_layer(arch, context, chunk)
    result = {
        "model": name, "task": arch.task, "architecture": arch.model_dump(exclude_defaults=True),
        "parameters": parameter_count(arch), "active_parameters": active_parameter_count(arch),
        "context_window": window, "checkpoint_precision": checkpoint, "quantization": quant,
        "kv_bytes_per_token": {k: int(v) for k, v in per_token.items()},
        "kv_bytes_per_sequence_at_context": int(per_token["auto"] * kept),
        "context": context, "concurrency": concurrency, "precisions": rows,
        "notes": notes + ([hf_config.kv_note(model)] if path.exists() and hf_config.kv_note(model) else []),
        "prices": f"{cat.prices_region} on-demand list prices as of {cat.prices_as_of}",
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    a = arch
    print(f"{name}  ({arch.task}, context window {window} tokens)")
    heads = (f"{a.num_attention_heads} heads, MLA latent {a.kv_lora_rank} + rope {a.qk_rope_head_dim}" if a.is_mla
             else f"{a.num_attention_heads} heads / {a.kv_heads} KV heads x {a.head_size}")
    moe = f", MoE {a.num_experts} experts (top {a.num_experts_per_tok})" if a.is_moe else ""
    window = f", {a.sliding_window_layers} layers windowed at {a.sliding_window}" if a.sliding_window_layers else ""
    shape = f"{a.num_hidden_layers} layers, hidden {a.hidden_size}, {heads}{moe}{window}"
    print(f"  architecture   {shape}")
    print(f"  parameters     {result['parameters']:,} ({result['active_parameters']:,} active per token)")
    print(f"  checkpoint     {checkpoint}" + (f" (pre-quantised: {quant})" if quant else ""))
    print(f"  KV per token   {result['kv_bytes_per_token']['auto']:,} B (16-bit), "
          f"{result['kv_bytes_per_token']['fp8']:,} B (fp8); one {context}-token sequence: "
          f"{result['kv_bytes_per_sequence_at_context'] / 2 ** 20:,.1f} MiB")
    print(f"\n  at max_model_len {context} x concurrency {concurrency}:")
    print(f"  {'precision':<9} {'runtime':<7} {'weights GiB':>11}  {'cheapest instance':<18} {'GPUs':>4} "
          f"{'$/h':>8} {'GiB/GPU':>8}")
    for r in rows:
        inst = r["instance_type"] or "none fits"
        price = f"{r['hourly_usd']:.2f}" if r["hourly_usd"] else ""
        print(f"  {r['precision']:<9} {r['runtime']:<7} {r['weights_gib']:>11.2f}  {inst:<18} "
              f"{r['gpus'] or '':>4} {price:>8} "
              f"{r['per_gpu_required_gib'] or '':>8}")
    for n in result["notes"]:
        print(f"  note: {n}")
    print(f"  prices: {result['prices']}")
    return 0


# ----------------------------------------------------------------------------- stage

def _stage(args) -> int:
    from llm_platform import staging
    code_revisions = {}
    for item in args.code_revision:
        repo, sep, commit = item.partition("=")
        if not sep or not repo or not commit:
            return _fail(f"--code-revision {item!r}: write ORG/REPO=<40-hex commit>")
        code_revisions[repo] = commit
    common = dict(kms_key_id=args.kms_key_id, workdir=args.workdir, endpoint_url=args.endpoint_url,
                  region=args.region, progress=not args.no_progress)
    try:
        if args.ollama:
            result = staging.stage_ollama(args.ollama, args.revision, args.store, name=args.name, model=args.hf_model,
                                          **common)
        else:
            result = staging.stage_hub(args.model, args.revision, args.store, name=args.name,
                                       config_dir=args.config_dir, code_revisions=code_revisions,
                                       exclude=args.exclude, **common)
    except staging.StageError as exc:
        return _fail(str(exc))
    r = result.report
    if r.already_complete:
        print(f"already staged: s3 holds the same manifest for this revision ({r.manifest_key})", file=sys.stderr)
    else:
        print(f"uploaded {len(r.uploaded)} files, {len(r.skipped)} already in the store; manifest {r.manifest_key} "
              "written last", file=sys.stderr)
    print(result.snippet, end="")
    return 0


def _fail(message: str) -> int:
    print(f"llm-platform: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
