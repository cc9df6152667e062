"""Results table over the seed runs of one configuration (mean ± std).

    python -m hiprompt.summarize output/coco/HierarchicalCoOp/rn50_nctx32_16-8-4-4 [--json OUT]

Reads `<run>/seed*/results_test.json` (written by the evaluator) and prints one row a metric.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from tabulate import tabulate

RESULT_FILE = "results_test.json"
MAIN_METRICS = ("mAP", "F1@3", "P@3", "R@3", "CF1", "OF1")


def collect(run_dir) -> dict:
    """{seed folder name: metrics dict} for the finished seeds under `run_dir`."""
    runs = {}
    for path in sorted(Path(run_dir).glob(f"seed*/{RESULT_FILE}")):
        runs[path.parent.name] = json.loads(path.read_text())["metrics"]
    return runs


def summary_rows(runs: dict, metrics=MAIN_METRICS) -> list:
    rows = []
    for metric in metrics:
        values = [float(r[metric]) for r in runs.values() if metric in r]
        if values:
            rows.append([metric, *[f"{v:.2f}" for v in values], f"{np.mean(values):.2f} ± {np.std(values):.2f}"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--json", default="", help="also write the mean and std as JSON here")
    args = parser.parse_args(argv)
    runs = collect(args.run_dir)
    if not runs:
        raise SystemExit(f"no {RESULT_FILE} under {args.run_dir}/seed*/: nothing finished yet")
    rows = summary_rows(runs)
    print(f"{args.run_dir}  ({len(runs)} seeds)")
    print(tabulate(rows, headers=["metric", *runs.keys(), "mean ± std"], tablefmt="github"))
    if args.json:
        from .fileio import atomic_write_json

        atomic_write_json(args.json, {
            m: {"mean": float(np.mean([r[m] for r in runs.values()])),
                "std": float(np.std([r[m] for r in runs.values()])), "seeds": len(runs)}
            for m in MAIN_METRICS if all(m in r for r in runs.values())
        })


if __name__ == "__main__":
    main()
