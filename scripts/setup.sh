#!/usr/bin/env bash
# Set up cnnlab on a fresh Linux machine: a virtual environment in .venv with pinned PyTorch,
# cnnlab itself (editable, with test tools), and the Fashion-MNIST data. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
FASHION=/usr/share/datasets/fashion-mnist

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi

# The pinned builds: on x86_64 a CUDA build (it runs on the CPU too); aarch64 gets the CPU build.
if [ "$(uname -m)" = "aarch64" ]; then
    TORCH="torch==2.9.1 torchvision==0.24.1"
else
    TORCH="torch==2.14.1 torchvision==0.29.1"
fi
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    echo "setup: installing $TORCH (a large download on a machine without a local copy)"
    .venv/bin/pip install --quiet --disable-pip-version-check $TORCH
fi
echo "setup: installing cnnlab"
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"

# Debian packages, where apt and root (or password-less sudo) are available.
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null && sudo -n true 2>/dev/null || return 1
        sudo="sudo -n"
    fi
    command -v apt-get >/dev/null || return 1
    $sudo apt-get install -y -qq "$@" >/dev/null 2>&1 ||
        { $sudo apt-get update -qq >/dev/null 2>&1 &&
          $sudo apt-get install -y -qq "$@" >/dev/null 2>&1; }
}

# Chromium and its driver, for the browser tests of the web page (Debian's packages: a browser
# downloaded at install time is not what a user's machine runs).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "setup: installing chromium and chromium-driver"
    apt_install chromium chromium-driver ||
        echo "setup: no apt as root here; the browser tests need chromium and chromium-driver"
fi

# PostgreSQL's server, for the test of tune workers sharing one study (the test starts its own
# server in a temporary folder; nothing is started here).
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "setup: installing postgresql"
    apt_install postgresql ||
        echo "setup: no apt as root here; the PostgreSQL test of cnnlab tune needs postgresql"
fi

if [ ! -f "$FASHION/train-images-idx3-ubyte.gz" ]; then
    echo "setup: installing Fashion-MNIST"
    apt_install dataset-fashion-mnist || echo "setup: no apt as root here; downloading Fashion-MNIST instead"
fi
if ! .venv/bin/python -c "from cnnlab.data.builtin import idx_folder as f; assert f('fashion-mnist', 'FashionMNIST')" 2>/dev/null; then
    .venv/bin/cnnlab datasets --download fashion-mnist >/dev/null
fi
echo "setup: done ($(.venv/bin/cnnlab --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
