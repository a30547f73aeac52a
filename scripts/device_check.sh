#!/usr/bin/env bash
# Everything GPU-bound layergw needs, in one call on a lent GPU machine (the device tool),
# sized for its 10-minute command limit. Prepare here, then call:
#
#   make device-wheels      # POT and pydantic for the image's Python 3.12 (it has the rest)
#   run(command="bash scripts/device_check.sh", carry=[".device"], timeout_s=590)
#
# 1. the gpu-marked tests that need no Ray (every family on CUDA, gw_batch in float32);
#    the image has no Ray, so tests/workflows/test_gpu_stages.py cannot run there;
# 2. `layergw bench gw-batch` at n = 1000 (issue 13's GPU figure);
# 3. the modular-sum seeds of configs/modsum_seeds.yaml (model_E_ref, model_L_ref,
#    model_L_handover, seeds 0-7) trained side by side on the GPU for the time left, each
#    saving its state every 500 epochs under $OUT/train; copy that folder back to
#    .device/train and call again to resume them (`layergw train` resumes from <id>.state.pt).
#
# $OUT comes back; the last lines printed are a summary.
set -u
shopt -s nullglob
OUT=${OUT:-/tmp/layergw-device-out}
BUDGET_S=${BUDGET_S:-570}
START=$(date +%s)
mkdir -p "$OUT/train" "$OUT/bench"
left() { echo $((BUDGET_S - ($(date +%s) - START))); }

SITE=.device/site
python3 -m pip install -q --no-index --no-deps --find-links .device/wheels --target "$SITE" \
    pot pydantic pydantic-core annotated-types typing-inspection > "$OUT/install.log" 2>&1
echo "install rc=$?"
export PYTHONPATH="$PWD/$SITE:$PWD" RAY_AUTH_MODE=disabled
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu -k "not hf" \
    tests/families/test_gpu_paths.py tests/measures/test_gw_batch.py > "$OUT/pytest-gpu.txt" 2>&1
echo "gpu tests rc=$?: $(tail -1 "$OUT/pytest-gpu.txt")"

timeout 150 python3 -m workflows.cli bench gw-batch --out "$OUT/bench" --markdown "$OUT/bench/gw-batch.md" \
    > "$OUT/bench/gw-batch.log" 2>&1
echo "bench gw-batch rc=$?"

cp -r .device/train/. "$OUT/train/" 2>/dev/null
SECONDS_LEFT=$(( $(left) - 20 ))
if [ "$SECONDS_LEFT" -gt 30 ]; then
  for preset in model_E_ref model_L_ref model_L_handover; do
    for seed in 0 1 2 3 4 5 6 7; do
      OMP_NUM_THREADS=1 timeout "$SECONDS_LEFT" python3 -m workflows.cli train --preset "$preset" --id "${preset}_s${seed}" \
          --seed "$seed" --device cuda --out "$OUT/train" --save-every 500 \
          > "$OUT/train/${preset}_s${seed}.log" 2>&1 &
    done
  done
  wait
fi
echo "== summary =="
cat "$OUT/bench/gw-batch.md" 2>/dev/null | tail -6
for f in "$OUT"/train/*.log; do echo "$(basename "$f" .log): $(tail -1 "$f" | cut -c1-150)"; done
