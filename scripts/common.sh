# Sourced by main.sh and eval.sh: the token composition and the run name, both made by
# hiprompt/training/runs.py (which checks NCTX and COMPOSITION and says what it expected).
# Needs NCTX, BACKBONE and the OPTS array; sets N_S N_P1 N_P2 N_C, RUN and CTX_OPTS.
RUN_VARS=$(python -m hiprompt.training.runs shell --composition "${COMPOSITION:-}" \
               "$BACKBONE" "$NCTX" "${OPTS[@]}") || exit $?
eval "$RUN_VARS"
