"""Results tables over seed runs (mean ± std).

    python -m hiprompt.training.summarize RUN                     # one run: a column per seed
    python -m hiprompt.training.summarize A=RUN_A B=RUN_B ...     # several: a row per labelled run

A run folder holds `seed*/results_test.json` (written by the evaluator), or a
`results_test.json` of its own (an evaluation without seeds, e.g. zero-shot).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from tabulate import tabulate

from hiprompt.fileio import atomic_write_json

RESULT_FILE = "results_test.json"
MAIN_METRICS = ("mAP", "F1@3", "P@3", "R@3", "CF1", "OF1")


def collect(run_dir) -> dict:
    """{seed folder name (or "run"): metrics dict} for the finished evaluations of `run_dir`."""
    run_dir = Path(run_dir)
    paths = sorted(run_dir.glob(f"seed*/{RESULT_FILE}"))
    if not paths and (run_dir / RESULT_FILE).is_file():
        paths = [run_dir / RESULT_FILE]
    return {(p.parent.name if p.parent != run_dir else "run"): json.loads(p.read_text())["metrics"] for p in paths}


def mean_std(runs: dict, metric: str):
    values = [float(r[metric]) for r in runs.values() if metric in r]
    return (float(np.mean(values)), float(np.std(values))) if values else None


def _cell(stats) -> str:
    return "–" if stats is None else f"{stats[0]:.2f} ± {stats[1]:.2f}"


def seed_table(runs: dict, metrics=MAIN_METRICS) -> str:
    rows = []
    for metric in metrics:
        values = [float(r[metric]) for r in runs.values() if metric in r]
        if values:
            rows.append([metric, *[f"{v:.2f}" for v in values], _cell(mean_std(runs, metric))])
    return tabulate(rows, headers=["metric", *runs.keys(), "mean ± std"], tablefmt="github")


def comparison_table(labelled: dict, metrics=("mAP", "F1@3")) -> str:
    rows = [[label, len(runs), *[_cell(mean_std(runs, m)) for m in metrics]] for label, runs in labelled.items()]
    return tabulate(rows, headers=["run", "seeds", *metrics], tablefmt="github")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="RUN folder, or LABEL=RUN for a comparison")
    parser.add_argument("--json", default="", help="also write the means and stds as JSON here")
    args = parser.parse_args(argv)
    labelled = {}
    for spec in args.runs:
        label, _, path = spec.rpartition("=") if "=" in spec else (spec, "", spec)
        runs = collect(path)
        if not runs:
            raise SystemExit(f"no {RESULT_FILE} under {path} (or its seed*/ folders): nothing finished yet")
        labelled[label] = runs
    if len(labelled) == 1:
        (label, runs), = labelled.items()
        print(f"{label}  ({len(runs)} seeds)")
        print(seed_table(runs))
    else:
        print(comparison_table(labelled))
    if args.json:
        atomic_write_json(args.json, {
            label: {m: dict(zip(("mean", "std"), mean_std(runs, m))) for m in MAIN_METRICS if mean_std(runs, m)}
            for label, runs in labelled.items()
        })


if __name__ == "__main__":
    main()
