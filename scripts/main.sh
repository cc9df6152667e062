#!/usr/bin/env bash
# Train hierarchical prompts on LLM text and evaluate on images, for seeds 1-3.
#
#   bash scripts/main.sh DATASET BACKBONE NCTX [KEY VALUE ...]
#   bash scripts/main.sh coco rn50 32          # the paper's main result
#
# DATASET: coco | coco2017 | voc2007 | nuswide | toy | toy80   BACKBONE: a file under
# configs/trainers/HierarchicalCoOp/ (rn50, tiny, toy, toy80)   NCTX: context tokens in all,
# split S/P-S#1/P-S#2/C-S as N/2, N/4, N/8, rest (32 -> 16/8/4/4) unless COMPOSITION=S,P1,P2,C.
# Trailing KEY VALUE pairs override the config (and name the run), e.g.
#   bash scripts/main.sh coco rn50 32 TRAINER.HIPROMPT.ORDER_LOSS False
#
# Environment (defaults in brackets):
#   DATA [data/<dataset>]         test-set root (COCO: holds annotations/ and val2014/)
#   KNOWLEDGE [knowledge/<dataset>] knowledge folder made by `python -m llm_knowledge`
#   OUTPUT [output]               run folders: OUTPUT/<dataset>/HierarchicalCoOp/<run>/seed<S>
#   HIPROMPT_WEIGHTS              CLIP checkpoint (tag or local file) overriding the config
#   HIPROMPT_CACHE [~/.cache/hiprompt]  feature and LLM caches
#   SEEDS ["1 2 3"]               seeds to run
#   HIPROMPT_LLM_BACKEND, HIPROMPT_LLM_MODEL, HIPROMPT_LLM_BASE_URL, HIPROMPT_LLM_PROFILE [paper]
#                                 how to make KNOWLEDGE when it is missing (see README)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 3 ]]; then
    sed -n '2,22p' "$0"; exit 2
fi
DATASET=$1; BACKBONE=$2; NCTX=$3; shift 3
OPTS=("$@")
TRAINER=HierarchicalCoOp
DATA=${DATA:-data/${DATASET}}
KNOWLEDGE=${KNOWLEDGE:-knowledge/${DATASET}}
OUTPUT=${OUTPUT:-output}
SEEDS=${SEEDS:-"1 2 3"}

DATASET_CFG=configs/datasets/${DATASET}.yaml
TRAINER_CFG=configs/trainers/${TRAINER}/${BACKBONE}.yaml
for f in "$DATASET_CFG" "$TRAINER_CFG"; do
    [[ -f $f ]] || { echo "error: $f not found (DATASET or BACKBONE unknown)" >&2; exit 2; }
done
source scripts/common.sh

if [[ ($DATASET == toy || $DATASET == toy80) && ! -f $DATA/labels.csv ]]; then
    # The toy worlds' held-out images are generated (seeded) when absent; toy80: 2,000 images.
    python -m hiprompt.toyworld.generate --world "$DATASET" --out "$DATA" --n-images "$([[ $DATASET == toy80 ]] && echo 2000 || echo 400)"
fi
DATA=$DATA bash scripts/knowledge.sh "$DATASET" "$KNOWLEDGE"

for SEED in $SEEDS; do
    DIR=${OUTPUT}/${DATASET}/${TRAINER}/${RUN}/seed${SEED}
    if [[ -f ${DIR}/results_test.json ]]; then
        echo "skip: ${DIR} is finished"
        continue
    fi
    python train.py --root "$DATA" --seed "$SEED" --trainer "$TRAINER" ${HIPROMPT_WEIGHTS:+--weights "$HIPROMPT_WEIGHTS"} \
        --dataset-config-file "$DATASET_CFG" --config-file "$TRAINER_CFG" --output-dir "$DIR" \
        DATASET.TEXT.DIR "$KNOWLEDGE" "${CTX_OPTS[@]}" "${OPTS[@]}"
done

python -m hiprompt.training.summarize "${OUTPUT}/${DATASET}/${TRAINER}/${RUN}"
