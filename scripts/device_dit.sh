#!/usr/bin/env bash
# Train the DiT testbed in one call on a CUDA machine that has torch and transformers but no
# package index, and hand the export back as tar parts that fit a file-size cap.
#
#   bash scripts/device_dit.sh fetch             # here: wheels for that machine into .wheels/device
#   bash scripts/device_dit.sh train [-- ARGS]   # there: install what is missing, train, export into $OUT
#   bash scripts/device_dit.sh unpack SRC DEST   # here: join SRC/dit-export.tar.part-* into DEST
#
# train: MINUTES (default 8) of training in all, then the export (EMA weights as a stock
# FluxPipeline folder, fp16) as $OUT/dit-export.tar.part-aa, -ab ... (PART_SIZE, default 15m),
# with $OUT/train.log and $OUT/log.jsonl. ARGS go to `python -m safetext.testbed.dit.train`.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=${WHEELS:-.wheels/device}
PY=${PY:-python}
# distribution==version import-name: what the trainer needs beyond torch and transformers
REQUIRED="diffusers==0.42.1:diffusers importlib_metadata==10.2.0:importlib_metadata zipp==4.1.2:zipp
rich==15.0.0:rich markdown-it-py==4.3.0:markdown_it mdurl==0.1.2:mdurl pygments==2.21.0:pygments
PyYAML==6.0.4:yaml pillow==13.0.0:PIL"

case "${1:-}" in
fetch)
  mkdir -p "$WHEELS"
  specs=$(for r in $REQUIRED; do echo "${r%%:*}"; done)
  # shellcheck disable=SC2086
  pip download --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d "$WHEELS" $specs
  du -sh "$WHEELS"
  ;;
train)
  shift
  [ "${1:-}" = "--" ] && shift
  : "${OUT:?set OUT to the folder the export goes to}"
  site=$(mktemp -d)
  missing=()
  for r in $REQUIRED; do
    dist=${r%%:*}
    module=${r##*:}
    if ! "$PY" -c "import $module" 2>/dev/null; then
      name=$(echo "${dist%%==*}" | tr 'A-Z-' 'a-z_')  # wheel files use the normalised name
      wheel=$(ls "$WHEELS"/"$name"-*.whl 2>/dev/null | head -1 || true)
      [ -n "$wheel" ] || { echo "[device_dit] $module is missing and $WHEELS has no wheel for $name (run: $0 fetch)" >&2; exit 2; }
      missing+=("$wheel")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[device_dit] installing ${#missing[@]} wheels into $site"
    "$PY" -m pip install --quiet --no-index --no-deps --target "$site" "${missing[@]}"
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
  run=${RUN:-runs/dit}
  set -o pipefail
  "$PY" -m safetext.testbed.dit.train --out "$run" --minutes "${MINUTES:-8}" --ckpt-every 1000 \
    --export "$run/export" "$@" 2>&1 | tee "$OUT/train.log"
  cp "$run/log.jsonl" "$OUT/log.jsonl"
  tar -C "$run" -cf - export | split -b "${PART_SIZE:-15m}" - "$OUT/dit-export.tar.part-"
  ls -la "$OUT"
  ;;
unpack)
  src=${2:?source folder with dit-export.tar.part-*}
  dest=${3:?destination folder}
  mkdir -p "$dest"
  cat "$src"/dit-export.tar.part-* | tar -C "$dest" -xf -
  echo "[device_dit] export in $dest/export"
  ;;
*)
  sed -n '2,12p' "$0"
  exit 2
  ;;
esac
