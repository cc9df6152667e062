#!/usr/bin/env bash
# Evaluate trained runs (or the hand-crafted zero-shot prompts) without training.
#
#   bash scripts/eval.sh DATASET BACKBONE NCTX [KEY VALUE ...]   # reloads the runs of main.sh
#   bash scripts/eval.sh DATASET BACKBONE zeroshot              # hand-crafted prompts
#
# Same environment variables as scripts/main.sh, plus EVAL_OPTS: evaluation-only overrides
# (e.g. EVAL_OPTS="TRAINER.HIPROMPT.LAMBDA_FUSE 1.0") whose results go to the sibling run
# folder <run>__<EVAL_OPTS>/seed<S>; without EVAL_OPTS to <run>/seed<S>/eval.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 3 ]]; then sed -n '2,8p' "$0"; exit 2; fi
DATASET=$1; BACKBONE=$2; NCTX=$3; shift 3
OPTS=("$@")
DATA=${DATA:-data/${DATASET}}
KNOWLEDGE=${KNOWLEDGE:-knowledge/${DATASET}}
OUTPUT=${OUTPUT:-output}
SEEDS=${SEEDS:-"1 2 3"}
if [[ $NCTX == zeroshot ]]; then
    DIR=${OUTPUT}/${DATASET}/ZeroshotCLIP/${BACKBONE}
    python train.py --root "$DATA" --trainer ZeroshotCLIP ${HIPROMPT_WEIGHTS:+--weights "$HIPROMPT_WEIGHTS"} \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/ZeroshotCLIP/${BACKBONE}.yaml" \
        --output-dir "$DIR" --eval-only "${OPTS[@]}"
    exit 0
fi

source scripts/common.sh
read -r -a EXTRA <<< "${EVAL_OPTS:-}"
if (( ${#EXTRA[@]} )); then
    EVAL_RUN=$(python -m hiprompt.training.runs eval-name "$RUN" "${EXTRA[@]}")
fi
for SEED in $SEEDS; do
    DIR=${OUTPUT}/${DATASET}/HierarchicalCoOp/${RUN}/seed${SEED}
    EVAL_DIR=${DIR}/eval
    if (( ${#EXTRA[@]} )); then
        EVAL_DIR=${OUTPUT}/${DATASET}/HierarchicalCoOp/${EVAL_RUN}/seed${SEED}
    fi
    python train.py --root "$DATA" --seed "$SEED" --trainer HierarchicalCoOp ${HIPROMPT_WEIGHTS:+--weights "$HIPROMPT_WEIGHTS"} \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/HierarchicalCoOp/${BACKBONE}.yaml" \
        --output-dir "$EVAL_DIR" --eval-only --model-dir "$DIR" \
        DATASET.TEXT.DIR "$KNOWLEDGE" "${CTX_OPTS[@]}" "${OPTS[@]}" "${EXTRA[@]}"
done
