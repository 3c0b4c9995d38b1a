#!/usr/bin/env bash
# PyCUDA for a GPU machine that cannot reach PyPI (the lent device machine):
# PyCUDA has no Linux wheels, so it is built there from its sdist against that
# machine's CUDA toolkit, with its pure-Python dependencies carried as files.
#
#   scripts/pycuda_offline.sh fetch   [DIR]   # here, with PyPI: sdist + dependencies into DIR
#   scripts/pycuda_offline.sh install [DIR]   # on the GPU machine: build and install from DIR only
#
# DIR defaults to pycuda-dist/ in the repository root (git-ignored: name it in the
# device tool's carry list, or fetch into shared/).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${2:-pycuda-dist}"
PYCUDA_VERSION="2025.1.2"   # the newest whose sdist metadata prepares without a GPU toolchain here

case "${1:-}" in
  fetch)
    mkdir -p "$DIR"
    python -m pip download --no-deps -d "$DIR" "pycuda==$PYCUDA_VERSION"
    python -m pip download --no-deps -d "$DIR" pytools platformdirs mako typing-extensions
    # compiled dependencies: wheels for every Python the device machine may have
    # (siphash24's sdist clones a git repository at build time: no sdist offline)
    for py in 3.10 3.11 3.12 3.13; do
      python -m pip download --no-deps --only-binary :all: --python-version "$py" \
          --platform manylinux2014_x86_64 -d "$DIR" markupsafe siphash24
    done
    ls -l "$DIR"
    ;;
  install)
    nvcc_path="$(command -v nvcc || ls -d /usr/local/cuda*/bin/nvcc 2>/dev/null | head -1 || true)"
    if [ -z "$nvcc_path" ]; then
      echo "no nvcc found: install a CUDA toolkit or put its bin directory on PATH" >&2
      exit 2
    fi
    # the real CUDA bin first on PATH: PyCUDA's configure finds the toolkit from nvcc
    export PATH="$(dirname "$(readlink -f "$nvcc_path")"):$PATH"
    export CUDA_ROOT="$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")"
    python -m pip install --no-build-isolation --no-index --find-links "$DIR" "pycuda==$PYCUDA_VERSION"
    python -c "import pycuda.autoinit, pycuda.driver as d; print('pycuda', d.get_version(), d.Device(0).name())"
    ;;
  *)
    echo "usage: $0 fetch|install [DIR]" >&2
    exit 2
    ;;
esac
