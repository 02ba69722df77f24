"""The one model verification script, rendered into EC2 user data (/usr/local/sbin/llm-verify-model), the EKS
init container and the Docker entrypoint. POSIX sh (dash, busybox ash, bash), coreutils or busybox tools.

    llm_verify_model DIR MANIFEST SHA256      # DIR "-": check only the manifest (before downloading weights)

Fails closed (non-zero, reason on stderr) when:
- the manifest's own SHA-256 is not the pinned one;
- a manifest line is malformed (`<64 hex>  <path>` or `<64 hex> *<path>`, as sha256sum writes them), names an
  absolute path, has a `.`/`..`/empty path component, or names a file twice;
- a listed file is missing, is not a regular file, or its SHA-256 differs ("FAILED");
- DIR holds anything the manifest does not list (the manifest itself excepted when it lives in DIR), or any
  symbolic link, anywhere.
Pure: no Pulumi import.
"""
from __future__ import annotations

import shlex

FUNCTION_NAME = "llm_verify_model"

VERIFY_FUNCTION = r"""llm_verify_model() (
  # a subshell: its traps, variables and `set` stay inside
  set -eu
  dir=$1 manifest=$2 pinned=$3
  fail() { echo "model verification: $*" >&2; exit 1; }
  # a missing tool must not read as "nothing to report": check them all first
  for tool in sha256sum cut find sed grep sort uniq mktemp cp rm tr wc; do
    command -v "$tool" > /dev/null 2>&1 || fail "needs $tool, which this image lacks"
  done
  if [ ! -f "$manifest" ] || [ -L "$manifest" ]; then fail "manifest $manifest is missing"; fi
  actual=$(sha256sum < "$manifest" | cut -c1-64)
  [ "$actual" = "$pinned" ] || fail "manifest digest $actual differs from the pinned $pinned"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  : > "$work/listed"
  while IFS= read -r line || [ -n "$line" ]; do
    hash=${line%% *}
    case $hash in *[!0-9a-f]*|'') fail "malformed manifest line: $line";; esac
    [ ${#hash} -eq 64 ] || fail "malformed manifest line: $line"
    name=${line#"$hash"}
    case $name in
      "  "*) name=${name#  };;
      " *"*) name=${name# \*};;
      *) fail "malformed manifest line: $line";;
    esac
    case $name in
      ''|/*) fail "manifest entry is not a relative path: '$name'";;
    esac
    case "/$name/" in
      */../*|*/./*|*//*) fail "manifest entry leaves or bends the model directory: $name";;
    esac
    printf '%s\n' "$name" >> "$work/listed"
    printf '%s %s\n' "$hash" "$name" >> "$work/sums"
  done < "$manifest"
  [ -s "$work/listed" ] || fail "the manifest lists no file"
  dups=$(sort "$work/listed" | uniq -d)
  [ -z "$dups" ] || fail "manifest lists a file twice: $dups"
  [ "$dir" = "-" ] && exit 0
  [ -d "$dir" ] || fail "model directory $dir is missing"
  links=$(find "$dir" -type l)
  [ -z "$links" ] || fail "symbolic links in the model directory: $links"
  while IFS= read -r entry; do
    hash=${entry%% *}
    name=${entry#* }
    [ -f "$dir/$name" ] || fail "missing: $name"
    got=$(sha256sum < "$dir/$name" | cut -c1-64)
    [ "$got" = "$hash" ] || fail "$name: FAILED (sha256 $got, manifest $hash)"
  done < "$work/sums"
  own=
  case $manifest in "$dir"/*) own=${manifest#"$dir"/};; esac
  (cd "$dir" && find . ! -type d) > "$work/found" || fail "cannot list $dir"
  sed 's|^[.]/||' "$work/found" > "$work/present" || fail "cannot list $dir"
  cp "$work/listed" "$work/allowed"
  [ -z "$own" ] || printf '%s\n' "$own" >> "$work/allowed"
  # grep: 0 = some file is not listed, 1 = none, anything else = it could not tell (fail closed)
  status=0
  grep -vxF -f "$work/allowed" "$work/present" > "$work/unlisted" || status=$?
  case $status in
    0) fail "files not in the manifest: $(sort "$work/unlisted" | tr '\n' ' ')";;
    1) ;;
    *) fail "cannot compare $dir with the manifest";;
  esac
  echo "model verified: $(wc -l < "$work/listed" | tr -d ' ') files match the pinned manifest" >&2
)
"""


def render_verify_function() -> str:
    """The shell function, to embed in a larger script (init container, entrypoint)."""
    return VERIFY_FUNCTION


def render_verify_script() -> str:
    """A standalone executable: `llm-verify-model DIR MANIFEST SHA256`."""
    return ("#!/bin/sh\n# Verify staged model weights against a pinned SHA256SUMS manifest; fail closed.\n"
            + VERIFY_FUNCTION + f'{FUNCTION_NAME} "$@"\n')


def verify_call(model_dir: str, manifest: str, manifest_sha256: str) -> str:
    return f"{FUNCTION_NAME} {shlex.quote(model_dir)} {shlex.quote(manifest)} {shlex.quote(manifest_sha256)}"
