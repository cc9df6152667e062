"""`scripts/main.sh` end to end: knowledge folder -> training for two seeds -> COCO images -> table."""

import os
import random
import subprocess
from pathlib import Path

from conftest import REPO, coco_mini_root, write_knowledge_folder
from hiprompt.classnames import COCO_CLASSES


def coco_knowledge(folder: Path) -> Path:
    rng = random.Random(0)
    sentences = []
    for name in COCO_CLASSES:
        for template in ("a {} is in the picture.", "the {} looks old.", "a small {} near the wall."):
            sentences.append((template.format(name), [name], "coarse"))
    for _ in range(200):
        a, b = rng.sample(COCO_CLASSES, 2)
        sentences.append((f"a {a} next to a {b}.", [a, b], "relation"))
    groups = {"coarse": [COCO_CLASSES[i:i + 10] for i in range(0, 80, 10)],
              "fine": [COCO_CLASSES[i:i + 5] for i in range(0, 80, 5)]}
    return write_knowledge_folder(folder, COCO_CLASSES, groups, sentences)


def run_main(env, *args):
    return subprocess.run(["bash", "scripts/main.sh", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def test_main_script_trains_seeds_evaluates_and_skips_finished_runs(tmp_path):
    data = coco_mini_root()
    env = dict(os.environ, DATA=str(data), KNOWLEDGE=str(coco_knowledge(tmp_path / "knowledge")),
               OUTPUT=str(tmp_path / "output"), SEEDS="1 2")
    opts = ["OPTIM.MAX_EPOCH", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "64"]
    first = run_main(env, "coco2017", "tiny", "8", *opts)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_dir = next((tmp_path / "output" / "coco2017" / "HierarchicalCoOp").iterdir())
    assert run_dir.name.startswith("tiny_nctx8_4-2-1-1")
    assert sorted(p.name for p in run_dir.iterdir()) == ["seed1", "seed2"]
    table = first.stdout[first.stdout.index("(2 seeds)"):]
    assert "mean ± std" in table and "mAP" in table and "F1@3" in table

    second = run_main(env, "coco2017", "tiny", "8", *opts)
    assert second.returncode == 0
    assert second.stdout.count("is finished") == 2 and "(2 seeds)" in second.stdout


def test_main_script_says_how_to_make_missing_knowledge(tmp_path):
    env = dict(os.environ, DATA=str(tmp_path), KNOWLEDGE=str(tmp_path / "none"), OUTPUT=str(tmp_path))
    env.pop("HIPROMPT_LLM_BACKEND", None)
    result = run_main(env, "coco", "rn50", "32")
    assert result.returncode == 1
    assert "python -m llm_knowledge --classes coco" in result.stderr
    assert "HIPROMPT_LLM_BACKEND" in result.stderr


def test_main_script_checks_nctx_and_composition_before_doing_anything(tmp_path):
    env = dict(os.environ, DATA=str(tmp_path / "data"), KNOWLEDGE=str(tmp_path / "knowledge"),
               OUTPUT=str(tmp_path / "output"))
    result = run_main(env, "toy", "toy", "abc")
    assert result.returncode == 2
    assert result.stderr == "error: NCTX='abc': expected a whole number of context tokens, e.g. 32\n"
    env["COMPOSITION"] = "16,8,4"
    result = run_main(env, "toy", "toy", "32")
    assert result.returncode == 2
    assert result.stderr.startswith("error: COMPOSITION='16,8,4': expected four whole numbers S,P1,P2,C")
    assert list(tmp_path.iterdir()) == []  # no images generated, no knowledge made, no run started
