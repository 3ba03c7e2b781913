#!/usr/bin/env bash
# Build the wheel, install it into a clean virtual environment, and run the CLI from a
# folder outside the checkout: the shipped policies, presets and testbed model must all
# come from the installed package. Run after scripts/setup.sh (it builds with .venv's tools).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Build and install quietly; the log is printed only when a step fails.
quiet() { "$@" >"$work/step.log" 2>&1 || { cat "$work/step.log"; echo "wheel check: failed: $*"; exit 1; }; }
echo "[wheel check] building the wheel and installing it into a clean virtual environment"
quiet .venv/bin/python -m pip wheel --no-deps --no-build-isolation -w "$work/dist" .
rm -rf build
wheel=$(ls "$work"/dist/safetext_t2i-*.whl)
quiet python3 -m venv "$work/venv"
# torch is named in the same command as its dependents (constraints pin the tested versions).
quiet "$work/venv/bin/python" -m pip install -c constraints.txt "torch==2.13.0" "${wheel}[diffusion,ocr,metrics]"

cd "$work" && mkdir elsewhere && cd elsewhere
[ ! -e policies ] || { echo "wheel check: $PWD must not hold policies/"; exit 1; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
st="$work/venv/bin/safetext"
"$st" --version
"$st" policy validate default >/dev/null
"$st" check --json 'a storefront sign that says "idiot"' | tee check.json
grep -q '"action": "rewrite"' check.json
"$st" check 'a sign that says "hello"'
"$st" demo --out demo-out
[ -f demo-out/grid.png ] && [ -f demo-out/report.json ]
"$work/venv/bin/python" - <<'PY'
import safetext
from safetext.policy import policies_dir
assert "site-packages" in str(policies_dir()), policies_dir()
print("wheel check: policies from", policies_dir())
PY
echo "wheel check: passed ($(basename "$wheel"), outside $repo)"
