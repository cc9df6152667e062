#!/usr/bin/env bash
# The whole method in the toy world, offline: knowledge -> training -> held-out images, and
# the comparison table (hand-crafted zero-shot, CoOp-shared, CSC, hierarchical; global only
# vs global + local; with and without the order loss).
#
#   bash scripts/toy_table.sh
#   WORLD=toy80 bash scripts/toy_table.sh     # the harder world (docs/toyworld.md)
#
# Environment as scripts/main.sh (WORLD [toy]: toy | toy80, DATA [data/$WORLD],
# KNOWLEDGE [knowledge/$WORLD], OUTPUT [output], SEEDS ["1 2 3"], NCTX [32]). The knowledge comes from the toy world's oracle unless
# HIPROMPT_LLM_BACKEND names an LLM, e.g. the SmolLM2 GGUF through llama-cpp:
#   HIPROMPT_LLM_BACKEND=llama-cpp HIPROMPT_LLM_MODEL=/path/to/SmolLM2.gguf \
#       KNOWLEDGE=knowledge/toy-smollm2 OUTPUT=output-smollm2 bash scripts/toy_table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORLD=${WORLD:-toy}
export DATA=${DATA:-data/$WORLD} KNOWLEDGE=${KNOWLEDGE:-knowledge/$WORLD} OUTPUT=${OUTPUT:-output}
export SEEDS=${SEEDS:-"1 2 3"}
N=${NCTX:-32}
H=$((N / 2)),$((N / 4)),$((N / 8)),$((N - N / 2 - N / 4 - N / 8))
RUNS=${OUTPUT}/${WORLD}/HierarchicalCoOp

train() {  # composition, then KEY VALUE overrides
    COMPOSITION=$1 bash scripts/main.sh "$WORLD" "$WORLD" "$N" "${@:2}" > /dev/null
}
train "$H"
train "$N,0,0,0"
train "0,0,0,$N"
train "$H" TRAINER.HIPROMPT.LOCAL_BRANCH False
train "$H" TRAINER.HIPROMPT.ORDER_LOSS False
EVAL_OPTS="TRAINER.HIPROMPT.LAMBDA_FUSE 1.0" COMPOSITION=$H bash scripts/eval.sh "$WORLD" "$WORLD" "$N" > /dev/null
bash scripts/eval.sh "$WORLD" "$WORLD" zeroshot > /dev/null

name() { python -m hiprompt.training.runs name "$@"; }
RUN=$(name --composition "$H" "$WORLD" "$N")
python -m hiprompt.training.summarize --json "${OUTPUT}/${WORLD}/table.json" \
    "hand-crafted (zero-shot), global + local=${OUTPUT}/${WORLD}/ZeroshotCLIP/${WORLD}" \
    "CoOp shared (${N} S), global + local=${RUNS}/$(name --composition "$N,0,0,0" "$WORLD" "$N")" \
    "CSC (${N} C-S), global + local=${RUNS}/$(name --composition "0,0,0,$N" "$WORLD" "$N")" \
    "hierarchical (${H//,/\/}), global + local=${RUNS}/${RUN}" \
    "hierarchical, global score only (λ2 = 1)=${RUNS}/$(python -m hiprompt.training.runs eval-name "$RUN" \
        TRAINER.HIPROMPT.LAMBDA_FUSE 1.0)" \
    "hierarchical, no local branch=${RUNS}/$(name --composition "$H" "$WORLD" "$N" TRAINER.HIPROMPT.LOCAL_BRANCH False)" \
    "hierarchical, no order loss=${RUNS}/$(name --composition "$H" "$WORLD" "$N" TRAINER.HIPROMPT.ORDER_LOSS False)"
