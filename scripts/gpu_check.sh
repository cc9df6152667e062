#!/usr/bin/env bash
# The GPU check: one command, under 8 minutes on one GPU, for a fresh clone on a machine with
# CUDA. Run it before and after a change to the GPU path; put its figures in docs/benchmarks.md.
#
#   bash scripts/gpu_check.sh
#
# 1. the tests marked `cuda` (every trainer, DualCoOp on images, the tagger, the prompt tree
#    in fp32 and bf16, all against the CPU);
# 2. the toy main job for seed 1 on the GPU and on the CPU, metrics side by side (must agree
#    within 0.5 points);
# 3. scripts/bench_step.py at batch 32 and 512, fp32 and bf16 (step time against the
#    TaI-DPT-style reference, operators, kernels and the GPU's busy share);
# 4. scripts/bench_images.py (JPEG decoding, RN50 image encoder, evaluation path: images/s).
#
# Installed as the README says, it needs nothing else. On a machine where only torch is
# installed, wheels of the other packages in .whl/ (see CONTRIBUTING.md) are installed to a
# temporary folder and the repository is put on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ! python3 -c "import open_clip, ftfy, yacs" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        SITE=$(mktemp -d)
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl
        export PYTHONPATH=$PYTHONPATH:$SITE
    else
        echo "error: open_clip, ftfy or yacs missing: install the project as the README says" >&2; exit 2
    fi
fi
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "error: no CUDA GPU visible to torch" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, open_clip; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'open_clip', open_clip.__version__)"
WORK=$(mktemp -d)
START=$SECONDS

echo "== 1. tests marked cuda"
python3 -m pytest -q -m cuda -p no:cacheprovider tests \
    --deselect tests/test_device.py::test_toy_main_job_on_the_gpu_gives_the_cpu_result

echo "== 2. toy main job, seed 1, GPU and CPU"
for DEVICE in cuda cpu; do
    T0=$SECONDS
    SEEDS=1 OUTPUT=$WORK/$DEVICE DATA=$WORK/data KNOWLEDGE=$WORK/knowledge \
        bash scripts/main.sh toy toy 32 $([[ $DEVICE == cpu ]] && echo USE_CUDA False) > "$WORK/toy-$DEVICE.log" 2>&1 \
        || { tail -20 "$WORK/toy-$DEVICE.log"; exit 1; }
    echo "  $DEVICE: $((SECONDS - T0)) s (knowledge and data made on the first)"
done
python3 - "$WORK" <<'PY'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
metrics = {d: json.loads(next((work / d).glob("toy/HierarchicalCoOp/*/seed1/results_test.json")).read_text())["metrics"]
           for d in ("cuda", "cpu")}
for name in ("mAP", "F1@3", "CF1", "OF1"):
    print(f"  {name:5} GPU {metrics['cuda'][name]:6.2f}  CPU {metrics['cpu'][name]:6.2f}")
far = [n for n in ("mAP", "F1@3") if abs(metrics["cuda"][n] - metrics["cpu"][n]) > 0.5]
sys.exit(f"GPU and CPU differ by more than 0.5 in {far}" if far else 0)
PY

echo "== 3. training step against the TaI-DPT-style reference"
for BATCH in 32 512; do
    for PREC in fp32 bf16; do
        python3 scripts/bench_step.py --device cuda --parts step --steps 10 --batch "$BATCH" --prec "$PREC" 2>&1 \
            | grep -v "^WARNING"
    done
done

echo "== 4. image throughput"
python3 scripts/bench_images.py --device cuda --images 4096 --batch 256 2>&1 | grep -v "^WARNING"
python3 scripts/bench_tag.py --device cuda --backbone RN50 --images 2048 --batch 256 --shard-size 512 --workers 4 2>&1 | grep -v "^WARNING"
echo "gpu_check: all passed in $((SECONDS - START)) s"
rm -rf "$WORK"
