#!/usr/bin/env bash
# Set up learnagent from a checkout on a fresh machine: venv, CPU torch, the package, bubblewrap,
# and the embedded default model. Idempotent; safe to re-run.
#
#   bash scripts/setup.sh            # non-editable install into ./.venv (what CI proves)
#   bash scripts/setup.sh --dev      # editable install, for working on learnagent
#   LEARNAGENT_LLAMA=1 bash scripts/setup.sh   # also the llama.cpp engine (builds llama.cpp: ~7 min on
#                                              # 2 cores; pip caches the wheel, so only the first time)
#
# Torch: installs the pinned CPU wheel (torch==2.13.0) only when the venv has no torch yet, so a
# CUDA build you installed first is kept. LEARNAGENT_TORCH overrides the requirement
# (e.g. LEARNAGENT_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LEARNAGENT_VENV:-.venv}
EDITABLE=""
[ "${1:-}" = "--dev" ] && EDITABLE="-e"

if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing bubblewrap (the sandbox for the agent's commands)"
    (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null || echo "warning: could not install bubblewrap; commands will run without the sandbox"
  else
    echo "note: bubblewrap (bwrap) is not installed; install it for the sandbox (apt install bubblewrap)"
  fi
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "== installing torch (${LEARNAGENT_TORCH:-torch==2.13.0})"
  # shellcheck disable=SC2086
  "$PY" -m pip install -q ${LEARNAGENT_TORCH:-torch==2.13.0}
fi
echo "== installing learnagent"
EXTRAS="test"
if [ "${LEARNAGENT_LLAMA:-0}" = 1 ]; then
  EXTRAS="test,llama"
  echo "   with the llama.cpp engine: pip builds llama-cpp-python from source (several minutes, once)"
fi
"$PY" -m pip install -q $EDITABLE ".[$EXTRAS]"
echo "== installing the default model (SmolLM2-135M-Instruct)"
"$VENV/bin/learnagent" model install
echo "== ready: . $VENV/bin/activate && learnagent --help"
