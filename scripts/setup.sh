#!/usr/bin/env bash
# Set up a virtual environment in .venv with the project installed (editable).
#   bash scripts/setup.sh          # what `roadmap run` needs
#   bash scripts/setup.sh test     # plus pytest and ruff
# Where apt-get works as root, Debian's real Fashion-MNIST is installed too (the one real image set that
# needs no download); elsewhere `roadmap` downloads what it needs into ~/.cache/convnext-roadmap.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --progress-bar off -e ".${extra}"
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "setup: could not install Debian's dataset-fashion-mnist; roadmap will download Fashion-MNIST instead"
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch, torchvision, timm; print("torch", torch.__version__, "torchvision", torchvision.__version__, "timm", timm.__version__)'))"
