#!/usr/bin/env bash
# Set up everything safetext needs on a fresh Debian-like machine (root, Python 3.11, no GPU):
# system packages (Tesseract, DejaVu fonts) and a virtual environment at .venv/ with the
# package installed in editable mode. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tesseract >/dev/null 2>&1 || need_apt+=(tesseract-ocr)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || need_apt+=(fonts-dejavu-core)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv

# torch==2.13.0 is named in the same pip command as everything that depends on it, and the
# constraints file pins the tested versions, so no dependency can pull a CUDA build of torch.
stamp=.venv/.safetext-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing Python packages into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0" -e ".[all]"
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $(.venv/bin/safetext --version 2>/dev/null || echo .venv/bin/safetext)"
