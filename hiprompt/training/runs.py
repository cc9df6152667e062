"""The main job's run: how its context tokens are split and what its run folder is called.

The one place for both facts; `scripts/main.sh` and `scripts/eval.sh` (through
`scripts/common.sh`) ask this module's command line, `scripts/tables/common.py` imports it.

- N context tokens are split S / P-S #1 / P-S #2 / C-S (shared, per coarse group, per fine
  group, per class) as N/2, N/4, N/8 and the rest (32 -> 16/8/4/4), unless a composition
  `S,P1,P2,C` (the scripts' `COMPOSITION`) says otherwise; its four counts add up to N.
- The run folder is `<backbone>_nctx<N>_<S-P1-P2-C>`, then, when `KEY VALUE` overrides are
  given, `_` and the overrides joined by `-` with every byte other than a letter, a digit,
  `.`, `-` (or a line break) written `_`; an evaluation with its own overrides
  (`EVAL_OPTS`) goes to the sibling folder `<run>__<its overrides, the same way>`.

    python -m hiprompt.training.runs composition NCTX          # "S P1 P2 C"
    python -m hiprompt.training.runs name BACKBONE NCTX [KEY VALUE ...]
    python -m hiprompt.training.runs eval-name RUN [KEY VALUE ...]
    python -m hiprompt.training.runs shell BACKBONE NCTX [KEY VALUE ...]   # for scripts/common.sh

The composition comes from `--composition S,P1,P2,C` given right after the command word, else
from the environment's `COMPOSITION` (as the scripts document it). An invalid NCTX or
composition prints `error: ...` and exits with status 2.
"""

import os
import re
import shlex
import sys

# The config keys of the four counts, in S, P1, P2, C order (hiprompt/config.py).
CONTEXT_KEYS = ("TRAINER.HIPROMPT.N_CTX_SHARED", "TRAINER.HIPROMPT.N_CTX_COARSE",
                "TRAINER.HIPROMPT.N_CTX_FINE", "TRAINER.HIPROMPT.N_CTX_CLASS")

_NUMBER = "(?:0|[1-9][0-9]*)"  # a whole number without leading zeros
_KEPT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.\n-")


class RunSpecError(ValueError):
    """An NCTX or composition the scripts refuse; the message says what was expected."""


def context_count(text) -> int:
    """NCTX as given on the command line: a whole number of context tokens."""
    if not re.fullmatch(_NUMBER, str(text)):
        raise RunSpecError(f"NCTX='{text}': expected a whole number of context tokens, e.g. 32")
    return int(text)


def split_context(n: int) -> tuple:
    """The default split of n tokens: (S, P1, P2, C) = (n/2, n/4, n/8, the rest), rounded down."""
    s, p1, p2 = n // 2, n // 4, n // 8
    return s, p1, p2, n - s - p1 - p2


def composition(n: int, spec=None) -> tuple:
    """(S, P1, P2, C) of n tokens: `spec` ("S,P1,P2,C", adding up to n) when given and not
    empty, else the default split."""
    if not spec:
        return split_context(n)
    if not re.fullmatch(rf"{_NUMBER}(?:,{_NUMBER}){{3}}", spec):
        raise RunSpecError(f"COMPOSITION='{spec}': expected four whole numbers S,P1,P2,C (tokens shared, "
                           f"per coarse group, per fine group, per class) adding up to NCTX, e.g. 16,8,4,4")
    counts = tuple(int(c) for c in spec.split(","))
    if sum(counts) != n:
        raise RunSpecError(f"COMPOSITION={spec} does not add up to NCTX={n}")
    return counts


def context_opts(counts) -> tuple:
    """The KEY VALUE overrides that set the four counts: (N_CTX_SHARED, S, ..., N_CTX_CLASS, C)."""
    return tuple(x for pair in zip(CONTEXT_KEYS, counts) for x in pair)


def overrides_tag(overrides) -> str:
    """The overrides as a folder-name part: joined by `-`, each byte (UTF-8) that is not a
    letter, a digit, `.`, `-` or a line break written `_`, a `-` ending a line dropped and
    trailing line breaks dropped (the scripts' former `printf | tr | sed` in `$(...)`)."""
    raw = b"".join(os.fsencode(str(o)) + b"-" for o in overrides)
    text = bytes(b if b in _KEPT else ord("_") for b in raw).decode("ascii")
    lines = [line.removesuffix("-") for line in text.split("\n")]
    return "\n".join(lines).rstrip("\n")


def run_name(backbone: str, n: int, counts, overrides=()) -> str:
    """`<backbone>_nctx<n>_<S-P1-P2-C>`, then `_<overrides>` when there are any."""
    name = f"{backbone}_nctx{n}_{'-'.join(str(c) for c in counts)}"
    overrides = list(overrides)
    return f"{name}_{overrides_tag(overrides)}" if overrides else name


def eval_run_name(run: str, eval_overrides=()) -> str:
    """The folder of an evaluation with its own overrides: the sibling `<run>__<overrides>`."""
    return f"{run}__{overrides_tag(eval_overrides)}"


USAGE = """usage: python -m hiprompt.training.runs composition [--composition S,P1,P2,C] NCTX
       python -m hiprompt.training.runs name [--composition S,P1,P2,C] BACKBONE NCTX [KEY VALUE ...]
       python -m hiprompt.training.runs eval-name RUN [KEY VALUE ...]
       python -m hiprompt.training.runs shell [--composition S,P1,P2,C] BACKBONE NCTX [KEY VALUE ...]"""


def _shell(counts, run) -> str:
    """Assignments for `eval` in bash: N_S N_P1 N_P2 N_C, RUN and the CTX_OPTS array."""
    names = ("N_S", "N_P1", "N_P2", "N_C")
    lines = [f"{name}={count}" for name, count in zip(names, counts)]
    lines.append(f"RUN={shlex.quote(run)}")
    lines.append(f"CTX_OPTS=({' '.join(shlex.quote(str(x)) for x in context_opts(counts))})")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("composition", "name", "eval-name", "shell"):
        print(USAGE, file=sys.stderr)
        return 2
    command, args = args[0], args[1:]
    spec = os.environ.get("COMPOSITION")
    if command != "eval-name" and args[:1] == ["--composition"]:
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        spec, args = args[1], args[2:]
    needed = {"composition": 1, "name": 2, "eval-name": 1, "shell": 2}[command]
    if len(args) < needed or (command == "composition" and len(args) != 1):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if command == "eval-name":
            out = eval_run_name(args[0], args[1:]) + "\n"
        elif command == "composition":
            out = " ".join(map(str, composition(context_count(args[0]), spec))) + "\n"
        else:
            backbone, n, overrides = args[0], context_count(args[1]), args[2:]
            counts = composition(n, spec)
            run = run_name(backbone, n, counts, overrides)
            out = _shell(counts, run) if command == "shell" else run + "\n"
    except RunSpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(os.fsencode(out))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
