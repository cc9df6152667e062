"""Precision and recall of the sentence labeller on hand-labelled sets, per class set.

    python scripts/eval_labeller.py [FILE ...] [--errors]

Without FILE it prints the two sets in tests/data/ (format: llm_knowledge/labelling_eval.py):
labelling_eval.tsv, which the context rules were tuned on, and labelling_heldout2.tsv,
written after the rules were final and measured once.
"""

import argparse
from pathlib import Path

from tabulate import tabulate

from llm_knowledge.labelling_eval import evaluate, read_examples, total

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
DEFAULT_FILES = [DATA / "labelling_eval.tsv", DATA / "labelling_heldout2.tsv"]


def report(path, show_errors: bool) -> str:
    """The table of one file (and its mismatching sentences when `show_errors`)."""
    scores, errors = evaluate(read_examples(path))
    rows = [[name, s.sentences, s.tp, s.fp, s.fn, f"{s.precision:.3f}", f"{s.recall:.3f}"]
            for name, s in sorted(scores.items())]
    all_sets = total(scores)
    rows.append(["all (micro)", all_sets.sentences, all_sets.tp, all_sets.fp, all_sets.fn,
                 f"{all_sets.precision:.3f}", f"{all_sets.recall:.3f}"])
    lines = [tabulate(rows, headers=["class set", "sentences", "TP", "FP", "FN", "precision",
                                     "recall"], disable_numparse=True)]
    if show_errors:
        for example, found in errors:
            gold = ",".join(example.gold) or "-"
            lines.append(f"{path}:{example.line} [{example.class_set}] gold {gold} | found "
                         f"{','.join(found) or '-'} | {example.text}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=[str(f) for f in DEFAULT_FILES],
                        metavar="FILE",
                        help="hand-labelled sentences (class set, gold labels, sentence)")
    parser.add_argument("--errors", action="store_true",
                        help="also print every sentence whose labels differ from the gold ones")
    args = parser.parse_args(argv)
    print("\n\n".join(f"{path}\n{report(path, args.errors)}" for path in args.files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
