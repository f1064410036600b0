#!/usr/bin/env bash
# The GPU measurements of issue 18, in one go, for whenever a GPU machine is available (at most 7 min 50 s:
# the parts' limits add up to 470 s). Writes JSON to ${OUT:-results/gpu_check}/:
#   machine.json       nvidia-smi, torch/CUDA versions
#   data_path.json     data-path images/s (in-process and 4/8 DataLoader workers) vs resnet18 224 px
#                      batch 64 forward+backward images/s, fp32 and bf16 (and the CPU default encoder)
#   precision.json     fp32 vs bf16 vs fp16 training-step time of resnet18 and swin_tiny, 224 px, batch 64
#   concurrent.json    N cells sharing the GPU (local worker processes; --executor ray: Ray, gpus_per_task 1/N) vs 1 cell at a time
#   summary.json       all of the above, with the wall time of each part
# Usage: bash benchmarks/gpu_check.sh [python]   (default: .venv/bin/python, else python)
#        SMOKE=1 DEVICE=cpu bash benchmarks/gpu_check.sh   a tiny CPU run that checks the script itself
# Nothing here changes GPU settings; every part has its own timeout so one hang cannot eat the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
OUT=${OUT:-results/gpu_check}
DEVICE=${DEVICE:-cuda}
if [ "${SMOKE:-0}" = 1 ]; then  # tiny sizes: checks the plumbing, measures nothing
  DP="--images 64 --data-batches 2 --steps 1 --warmup 0 --image-size 64 --workers 0,2"
  MODELS="test_resnet test_vit"; SIZE=64; PSTEPS=1
  CC="--cells 2 --concurrency 1,2 --images 48 --source-size 96 64 --epochs 1 --batch 16 --model test_efficientnet --image-size 32 --threads-per-worker 1"
else
  DP="--images 512 --data-batches 24 --steps 20 --warmup 5 --workers 0,4,8"
  MODELS="resnet18 swin_tiny_patch4_window7_224"; SIZE=224; PSTEPS=20
  CC="--cells 4 --concurrency 1,2,4 --images 512 --epochs 2"
fi
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
T0=$(date +%s)
declare -A SECONDS_OF STATUS_OF

part() {  # part NAME TIMEOUT_S CMD...
  local name=$1 limit=$2; shift 2
  local start; start=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | tail -n 20
  STATUS_OF[$name]=${PIPESTATUS[0]}
  SECONDS_OF[$name]=$(( $(date +%s) - start ))
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/nvidia-smi.txt" 2>&1 || true
"$PY" - "$OUT" <<'PYEOF'
import json, sys, os, torch
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_cores": os.cpu_count(), "nvidia_smi": open(os.path.join(sys.argv[1], "nvidia-smi.txt")).read().strip()}
json.dump(info, open(os.path.join(sys.argv[1], "machine.json"), "w"), indent=1)
print(info)
PYEOF

# 1. Data path vs encoder (about 2 min): in-process, 4 and 8 worker processes; fp32 and bf16.
part data_path 150 "$PY" benchmarks/bench_data_path.py --device "$DEVICE" --threads 0 --precision fp32,bf16 \
  $DP --json "$OUT/data_path.json"

# 2. Precision: step time of resnet18 and swin_tiny at 224 px, batch 64 (about 1 min).
part precision 90 "$PY" - "$OUT/precision.json" "$DEVICE" "$SIZE" "$PSTEPS" $MODELS <<'PYEOF'
import json, sys, torch
from benchmarks.bench_data_path import model_images_per_s
out, device, size, steps, models = sys.argv[1], torch.device(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
rows = []
for model in models:
    for prec in ("fp32", "bf16", "fp16"):
        ips = model_images_per_s(model, 3, size, 64, device, prec, steps=steps, warmup=min(5, steps))
        rows.append({"model": model, "precision": prec, "images_per_s": round(ips, 1), "step_ms": round(64e3 / ips, 2)})
        print(rows[-1], flush=True)
for r in rows:
    fp32 = next(x for x in rows if x["model"] == r["model"] and x["precision"] == "fp32")
    r["speedup_vs_fp32"] = round(r["images_per_s"] / fp32["images_per_s"], 2)
json.dump(rows, open(out, "w"), indent=1)
PYEOF

# 3. N concurrent cells vs 1 (about 3 min; the JSON keeps the variants finished by the limit): 4 cells of late_fusion, resnet18 224 px, 2 epochs.
part concurrent 230 "$PY" benchmarks/bench_concurrent_cells.py --device "$DEVICE" $CC --json "$OUT/concurrent.json"

"$PY" - "$OUT" "$(( $(date +%s) - T0 ))" \
  "data_path=${STATUS_OF[data_path]}:${SECONDS_OF[data_path]}" \
  "precision=${STATUS_OF[precision]}:${SECONDS_OF[precision]}" \
  "concurrent=${STATUS_OF[concurrent]}:${SECONDS_OF[concurrent]}" <<'PYEOF'
import json, os, sys
out, total, parts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
summary = {"total_s": total, "parts": {}}
for item in parts:
    name, rest = item.split("=", 1)
    rc, secs = rest.split(":")
    path = os.path.join(out, f"{name}.json")
    summary["parts"][name] = {"rc": int(rc), "seconds": int(secs),
                              "result": json.load(open(path)) if os.path.exists(path) else None}
summary["machine"] = json.load(open(os.path.join(out, "machine.json")))
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(f"gpu_check: {total} s, " + ", ".join(f"{k} rc={v['rc']} {v['seconds']}s" for k, v in summary["parts"].items()))
PYEOF
