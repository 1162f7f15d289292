#!/usr/bin/env bash
# Set up learnagent from a checkout on a fresh machine: venv, CPU torch, the package, bubblewrap,
# and the embedded default model. Idempotent; safe to re-run.
#
#   bash scripts/setup.sh            # non-editable install into ./.venv (what CI proves)
#   bash scripts/setup.sh --dev      # editable install, for working on learnagent
#   LEARNAGENT_LLAMA=1 bash scripts/setup.sh   # also the llama.cpp engine and `learnagent serve` (builds
#                                              # llama.cpp: ~7 min on 2 cores, once: the wheel is cached)
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
  # llama.cpp for any x86-64 CPU of the last decade (AVX2/FMA/F16C), not -march=native: a native
  # build on a CPU that advertises AVX-512/AMX died with SIGILL on the Q4_1 GGUF (docs/benchmarks/decode.md).
  # CMAKE_ARGS set by you (e.g. -DGGML_CUDA=on) replace these. The wheel is kept in the cache, keyed by
  # the flags, so the build (~7 min on 2 quiet cores) happens once; pip's own wheel cache ignores CMAKE_ARGS.
  LLAMA_CMAKE=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"}
  LLAMA_WHEELS="${LEARNAGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/learnagent}/wheels/llama-$(printf %s "$LLAMA_CMAKE" | sha256sum | cut -c1-12)"
  if ! ls "$LLAMA_WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "   with the llama.cpp engine: building llama-cpp-python from source (several minutes, once) into $LLAMA_WHEELS"
    mkdir -p "$LLAMA_WHEELS"
    CMAKE_ARGS="$LLAMA_CMAKE" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
      "$PY" -m pip wheel -q --no-deps --no-cache-dir -w "$LLAMA_WHEELS" "llama-cpp-python>=0.3.8,<0.4"
  fi
  "$PY" -m pip install -q "$(ls "$LLAMA_WHEELS"/llama_cpp_python-*.whl | tail -n 1)"
fi
"$PY" -m pip install -q $EDITABLE ".[$EXTRAS]"
echo "== installing the default model (SmolLM2-135M-Instruct)"
"$VENV/bin/learnagent" model install
echo "== ready: . $VENV/bin/activate && learnagent --help"
