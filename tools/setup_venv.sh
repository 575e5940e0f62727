#!/usr/bin/env bash
# Creates the virtual environment and installs torch into it, the one dependency whose build
# depends on the machine (called by `make setup`; see the README's "Set-up" section).
#
#   tools/setup_venv.sh VENV
#
# Which torch:
#   HARNESS_PYTHON=/path/to/python  reuse that interpreter's torch (a CUDA build, say): the venv is
#                                   made from it (a system, conda or venv interpreter) and sees its
#                                   site-packages after its own (a .pth file), so torch is not
#                                   installed again; the set-up stops if that interpreter has no
#                                   torch.
#   a torch already in VENV         kept as it is (install a CUDA build there first, if you like).
#   a machine with an NVIDIA GPU    torch==$TORCH_VERSION from PyPI (the CUDA build).
#   otherwise (CPU)                 the CPU-only build from PyTorch's CPU wheel index
#                                   ($TORCH_CPU_INDEX); when that index cannot be reached within
#                                   $TORCH_INDEX_TIMEOUT seconds, the pinned wheel from PyPI
#                                   (or from the pip configuration's own indexes).
set -euo pipefail

VENV=${1:?usage: tools/setup_venv.sh VENV}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
TORCH_INDEX_TIMEOUT=${TORCH_INDEX_TIMEOUT:-10}

say() { echo "setup: $*"; }
fail() { echo "setup: error: $*" >&2; exit 2; }

check_python() {  # the interpreter must exist and be 3.11 or newer
    local python=$1 version
    command -v "$python" >/dev/null 2>&1 || fail "no Python interpreter '$python' (set PYTHON=...)"
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
        || version=""
    case "$version" in
        3.1[1-9] | 3.[2-9][0-9] | [4-9].*) ;;
        "") fail "$python is not a working Python interpreter (set PYTHON=python3.11 or newer)" ;;
        *) fail "harness needs Python 3.11 or newer; $python is Python $version. \
Run with PYTHON=python3.11 (or newer), e.g. \`make demo PYTHON=python3.12\`" ;;
    esac
}

if [ -n "${HARNESS_PYTHON:-}" ]; then
    check_python "$HARNESS_PYTHON"
    "$HARNESS_PYTHON" -W ignore -c 'import torch' 2>/dev/null \
        || fail "HARNESS_PYTHON=$HARNESS_PYTHON has no torch to reuse (import torch failed)"
    [ -x "$VENV/bin/python" ] || "$HARNESS_PYTHON" -m venv "$VENV"
    # --system-site-packages would see the base installation's packages, not those of a venv or
    # conda env that HARNESS_PYTHON may belong to: name its site-packages directly.
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$HARNESS_PYTHON" -W ignore -c 'import os, site, torch
paths = [os.path.dirname(os.path.dirname(torch.__file__)), *site.getsitepackages()]
print("\n".join(dict.fromkeys(paths)))' > "$site/harness-reuse-site-packages.pth"
    say "reusing the packages of $HARNESS_PYTHON (listed in $site/harness-reuse-site-packages.pth)"
else
    check_python "$PYTHON"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip

if "$VENV/bin/python" -W ignore -c 'import torch' 2>/dev/null; then
    say "keeping torch $("$VENV/bin/python" -W ignore -c 'import torch; print(torch.__version__)')" \
        "(CUDA: $("$VENV/bin/python" -W ignore -c 'import torch; print(torch.version.cuda)'))"
    exit 0
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    say "NVIDIA GPU found: torch==$TORCH_VERSION from PyPI (its CUDA build)"
    "${PIP[@]}" install --quiet "torch==$TORCH_VERSION"
    exit 0
fi

# A CPU machine: ask PyTorch's CPU index first. Reaching it is checked with a short timeout,
# so that a machine without access to it falls back at once instead of after pip's retries.
if "$VENV/bin/python" - "$TORCH_CPU_INDEX/torch/" "$TORCH_INDEX_TIMEOUT" <<'EOF' 2>/dev/null
import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as response:
    response.read(1)
EOF
then
    say "torch==$TORCH_VERSION, CPU-only build, from $TORCH_CPU_INDEX"
    if "${PIP[@]}" install --quiet --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION"; then
        exit 0
    fi
    say "installing from $TORCH_CPU_INDEX failed; falling back to the pinned wheel"
else
    say "$TORCH_CPU_INDEX cannot be reached (within ${TORCH_INDEX_TIMEOUT}s); falling back to" \
        "the pinned torch==$TORCH_VERSION from the configured indexes (on a stock machine" \
        "PyPI's Linux wheel is the CUDA build, several GB)"
fi
"${PIP[@]}" install --quiet "torch==$TORCH_VERSION"
say "installed torch $("$VENV/bin/python" -W ignore -c 'import torch; print(torch.__version__)')"
