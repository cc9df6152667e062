"""The plug-ins on Dassl's own runtime (registries, TrainerX loop, config). Dassl is not on
PyPI, so this runs only where a Dassl.pytorch checkout is installed."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, coco_mini_root
from test_scripts import coco_knowledge

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (optional; install it from a git checkout)")


def run_train(env, *args):
    result = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_hierarchical_coop_trains_resumes_and_reloads_on_dassl(tmp_path):
    env = dict(os.environ, HIPROMPT_RUNTIME="dassl")
    common = ["--root", str(coco_mini_root()), "--seed", "1", "--trainer", "HierarchicalCoOp",
              "--dataset-config-file", "configs/datasets/coco2017.yaml",
              "--config-file", "configs/trainers/HierarchicalCoOp/tiny.yaml"]
    knowledge = ["DATASET.TEXT.DIR", str(coco_knowledge(tmp_path / "knowledge"))]
    run = tmp_path / "run"
    first = run_train(env, *common, "--output-dir", str(run), *knowledge, "OPTIM.MAX_EPOCH", "1")
    assert "Loading trainer: HierarchicalCoOp" in first.stdout + first.stderr  # Dassl's own loader
    resumed = run_train(env, *common, "--output-dir", str(run), *knowledge, "OPTIM.MAX_EPOCH", "2")
    assert "epoch [1/2]" not in resumed.stdout and "epoch [2/2]" in resumed.stdout
    run_train(env, *common, "--output-dir", str(tmp_path / "eval"), "--eval-only", "--model-dir", str(run), *knowledge)
    trained = json.loads((run / "results_test.json").read_text())["metrics"]["mAP"]
    reloaded = json.loads((tmp_path / "eval" / "results_test.json").read_text())["metrics"]["mAP"]
    assert reloaded == pytest.approx(trained)
