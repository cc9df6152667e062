"""Precision and recall of the sentence labeller on the hand-labelled set, per class set.

    python scripts/eval_labeller.py [FILE] [--errors]

FILE defaults to tests/data/labelling_eval.tsv (format: llm_knowledge/labelling_eval.py).
"""

import argparse
from pathlib import Path

from tabulate import tabulate

from llm_knowledge.labelling_eval import evaluate, read_examples, total

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "tests" / "data" / "labelling_eval.tsv"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=str(DEFAULT_FILE),
                        help="hand-labelled sentences (class set, gold labels, sentence)")
    parser.add_argument("--errors", action="store_true",
                        help="also print every sentence whose labels differ from the gold ones")
    args = parser.parse_args(argv)
    scores, errors = evaluate(read_examples(args.file))
    rows = [[name, s.sentences, s.tp, s.fp, s.fn, f"{s.precision:.3f}", f"{s.recall:.3f}"]
            for name, s in sorted(scores.items())]
    all_sets = total(scores)
    rows.append(["all (micro)", all_sets.sentences, all_sets.tp, all_sets.fp, all_sets.fn,
                 f"{all_sets.precision:.3f}", f"{all_sets.recall:.3f}"])
    print(tabulate(rows, headers=["class set", "sentences", "TP", "FP", "FN", "precision",
                                  "recall"], disable_numparse=True))
    if args.errors:
        for example, found in errors:
            gold = ",".join(example.gold) or "-"
            print(f"{args.file}:{example.line} [{example.class_set}] gold {gold} | found "
                  f"{','.join(found) or '-'} | {example.text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
