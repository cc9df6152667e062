#!/usr/bin/env bash
# Make sure the knowledge folder for DATASET exists; make it with the LLM stage if it does not.
#
#   bash scripts/knowledge.sh DATASET KNOWLEDGE_DIR
#
# The toy world answers from its own tables (back-end toy-oracle, classes from
# $DATA/classnames.txt); the benchmarks need an LLM named by the environment:
#   HIPROMPT_LLM_BACKEND   chatglm-cpp | llama-cpp | openai
#   HIPROMPT_LLM_MODEL     model file (.bin / .gguf) or the server's model name
#   HIPROMPT_LLM_BASE_URL  OpenAI-compatible server (openai back-end)
#   HIPROMPT_LLM_PROFILE   count profile [paper; toy: small]
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=$1; OUT=$2
if [[ -f $OUT/corpus.jsonl && -f $OUT/groups.json && -f $OUT/classnames.txt ]]; then
    exit 0
fi
case $DATASET in
    coco|coco2017) CLASSES=coco ;;
    voc2007) CLASSES=voc2007 ;;
    nuswide) CLASSES=nuswide ;;
    toy|toy80) CLASSES=${DATA:-data/$DATASET}/classnames.txt ;;
    *) echo "error: no class set for dataset '$DATASET'" >&2; exit 2 ;;
esac
if [[ $DATASET == toy || $DATASET == toy80 ]]; then
    BACKEND=${HIPROMPT_LLM_BACKEND:-toy-oracle}
    if [[ $DATASET == toy80 && $BACKEND == toy-oracle ]]; then  # the oracle's world (and mistakes)
        HIPROMPT_LLM_MODEL=${HIPROMPT_LLM_MODEL:-toy80}
    fi
    PROFILE=${HIPROMPT_LLM_PROFILE:-small}
elif [[ -n ${HIPROMPT_LLM_BACKEND:-} ]]; then
    BACKEND=$HIPROMPT_LLM_BACKEND
    PROFILE=${HIPROMPT_LLM_PROFILE:-paper}
else
    cat >&2 <<MSG
error: no knowledge folder at $OUT (classnames.txt, groups.json, corpus.jsonl).
Make it with an LLM first, for example:
  python -m llm_knowledge --classes $CLASSES --backend chatglm-cpp --model chatglm3-ggml.bin --out $OUT
or let this script do it by naming the LLM in the environment:
  HIPROMPT_LLM_BACKEND=chatglm-cpp HIPROMPT_LLM_MODEL=chatglm3-ggml.bin bash scripts/main.sh ...
  HIPROMPT_LLM_BACKEND=openai HIPROMPT_LLM_BASE_URL=http://127.0.0.1:8000/v1 bash scripts/main.sh ...
(see docs/llm_knowledge.md), or point KNOWLEDGE at an existing folder.
MSG
    exit 1
fi
ARGS=(--classes "$CLASSES" --backend "$BACKEND" --profile "$PROFILE" --out "$OUT")
if [[ -n ${HIPROMPT_LLM_MODEL:-} ]]; then ARGS+=(--model "$HIPROMPT_LLM_MODEL"); fi
if [[ -n ${HIPROMPT_LLM_BASE_URL:-} ]]; then ARGS+=(--base-url "$HIPROMPT_LLM_BASE_URL"); fi
# The grouping fallback's text encoder: the toy world's CLIP, else the run's weights.
if [[ $DATASET == toy || $DATASET == toy80 ]]; then ARGS+=(--group-backbone "$DATASET" --group-weights packaged)
elif [[ -n ${HIPROMPT_WEIGHTS:-} ]]; then ARGS+=(--group-weights "$HIPROMPT_WEIGHTS"); fi
python -m llm_knowledge "${ARGS[@]}"
