"""scripts/dualcoop_fit.py: DualCoOp's loss and aggregation fitted to a labelled image folder."""

import re
import subprocess
import sys
from pathlib import Path

from hiprompt.toyworld.generate import write_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "dualcoop_fit.py"


def fit(folder: Path, *options) -> list:
    """The training-image mAPs the script reports, in order."""
    done = subprocess.run([sys.executable, SCRIPT, "--images", folder, "--backbone", "toy", "--size", "64",
                           *options], capture_output=True, text=True, check=True)
    return [float(m) for m in re.findall(r"mAP on the training images ([\d.]+)", done.stdout)]


def test_free_class_embeddings_fit_the_training_images_and_prompts_run(tmp_path):
    write_dataset(tmp_path / "toy", 48, seed=3)
    free = fit(tmp_path / "toy", "--prompts", "free", "--optim", "adam", "--lr", "0.05", "--steps", "100")
    assert len(free) == 5
    # 48 images, 20 classes and free [C, D] embeddings: the loss fits them far above the start
    assert free[-1] > free[0] + 5 and free[-1] > 60
    # DualCoOp's shared prompts learn too (seeded: 25.2 after 5 steps, 31.5 after 25), from
    # 14.5 before any step (measured with --lr 0)
    shared = fit(tmp_path / "toy", "--prompts", "shared", "--optim", "adam", "--lr", "0.05", "--steps", "25")
    assert len(shared) == 5 and shared[-1] > shared[0] + 3
