# Sourced by main.sh and eval.sh: the token composition and the run name.
# Needs NCTX, BACKBONE and the OPTS array; sets N_S N_P1 N_P2 N_C, RUN and CTX_OPTS.
NUMBER='(0|[1-9][0-9]*)'
if [[ ! $NCTX =~ ^${NUMBER}$ ]]; then
    echo "error: NCTX='$NCTX': expected a whole number of context tokens, e.g. 32" >&2; exit 2
fi
if [[ -n ${COMPOSITION:-} && ! $COMPOSITION =~ ^${NUMBER}(,${NUMBER}){3}$ ]]; then
    echo "error: COMPOSITION='$COMPOSITION': expected four whole numbers S,P1,P2,C (tokens shared," \
         "per coarse group, per fine group, per class) adding up to NCTX, e.g. 16,8,4,4" >&2; exit 2
fi
if [[ -n ${COMPOSITION:-} ]]; then
    IFS=, read -r N_S N_P1 N_P2 N_C <<< "$COMPOSITION"
else
    N_S=$((NCTX / 2)); N_P1=$((NCTX / 4)); N_P2=$((NCTX / 8)); N_C=$((NCTX - N_S - N_P1 - N_P2))
fi
if (( N_S + N_P1 + N_P2 + N_C != NCTX )); then
    echo "error: COMPOSITION=${COMPOSITION:-} does not add up to NCTX=$NCTX" >&2; exit 2
fi
RUN=${BACKBONE}_nctx${NCTX}_${N_S}-${N_P1}-${N_P2}-${N_C}
if (( ${#OPTS[@]} )); then
    RUN=${RUN}_$(printf '%s-' "${OPTS[@]}" | tr -c 'A-Za-z0-9.\n-' '_' | sed 's/-$//')
fi
CTX_OPTS=(TRAINER.HIPROMPT.N_CTX_SHARED "$N_S" TRAINER.HIPROMPT.N_CTX_COARSE "$N_P1"
          TRAINER.HIPROMPT.N_CTX_FINE "$N_P2" TRAINER.HIPROMPT.N_CTX_CLASS "$N_C")
