"""scripts/branch_diagnostics.py rebuilds a finished run's model from its folder alone: its
fused scores must give the mAP and F1@3 the trainer's own evaluation wrote."""

import json
import re
import subprocess
import sys

from conftest import REPO
from test_resume import cli
from test_trainer import make_text_world

import train


def test_diagnostics_reproduce_the_runs_own_evaluation(tmp_path):
    world = make_text_world(tmp_path / "world")
    run = tmp_path / "run"
    train.main(cli(world, run))
    written = json.loads((run / "results_test.json").read_text())["metrics"]
    done = subprocess.run([sys.executable, "scripts/branch_diagnostics.py", str(run), "--cache", str(tmp_path / "c")],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    row = re.search(r"^fused: learned global \+ learned local\s+([\d.]+)\s+([\d.]+)$", done.stdout, re.M)
    assert row, done.stdout
    assert float(row.group(1)) == round(written["mAP"], 2)
    assert float(row.group(2)) == round(written["F1@3"], 2)
    # every term's gradient, at the trained state and at the start
    assert len(re.findall(r"^gradients (trained|at the start): rank_global .* rank_local .* λ1·order ", done.stdout,
                          re.M)) == 2
