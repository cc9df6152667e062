"""The baselines end to end on the tiny backbone with ../shared/data/coco-mini: CoOp and
TaI-DPT on text, DualCoOp on partially labelled train2017 images and on text."""

import json

import numpy as np
import pytest
import torch
from conftest import coco_mini_root, write_knowledge_folder

import train
from hiprompt.classnames import builtin_class_set
from hiprompt.data.coco import read_coco
from hiprompt.training.checkpoint import load_checkpoint

COCO = ["--dataset-config-file", "configs/datasets/coco2017.yaml"]


def tiny(trainer):
    return ["--trainer", trainer, "--config-file", f"configs/trainers/{trainer}/tiny.yaml"]


@pytest.fixture(scope="module")
def coco_text(tmp_path_factory):
    """Caption-like sentences over COCO's classes, one per train2017 image (its labels)."""
    root = coco_mini_root()
    images = read_coco(str(root), split="train2017")
    classes = builtin_class_set("coco")
    sentences = []
    for row in images.labels:
        names = [images.classnames[i] for i in np.flatnonzero(row)][:3]
        if names:
            sentences.append(("a photo of " + " and ".join(f"a {n}" for n in names) + ".", names, "caption"))
    folder = tmp_path_factory.mktemp("coco-text") / "knowledge"
    return root, write_knowledge_folder(folder, classes, {"coarse": [], "fine": []}, sentences)


def results(folder):
    return json.loads((folder / "results_test.json").read_text())


@pytest.mark.parametrize("trainer, kinds, local", [("CoOp", {"shared"}, False), ("TaIDPT", {"shared"}, True)])
def test_text_baselines_train_and_evaluate(coco_text, tmp_path, trainer, kinds, local):
    root, knowledge = coco_text
    out = tmp_path / trainer
    train.main(["--root", str(root), *COCO, *tiny(trainer), "--seed", "1", "--output-dir", str(out),
                "DATASET.TEXT.DIR", str(knowledge), "OPTIM.MAX_EPOCH", "1"])
    assert results(out)["num_images"] == 128
    state = load_checkpoint(out, "prompt_learner")["state_dict"]
    learned = {k for k in state if ".vectors." in k}
    assert learned == {f"global_context.vectors.{k}" for k in kinds} | (
        {f"local_context.vectors.{k}" for k in kinds} if local else set())
    assert state["global_context.vectors.shared"].shape[:2] == (1, 16)  # one context of 16 tokens


@pytest.mark.parametrize("trainer", ["CoOp", "TaIDPT"])
def test_text_baselines_refuse_a_hierarchical_composition(coco_text, tmp_path, capsys, trainer):
    root, knowledge = coco_text
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--root", str(root), *COCO, *tiny(trainer), "--output-dir", str(tmp_path),
                    "DATASET.TEXT.DIR", str(knowledge), "TRAINER.HIPROMPT.N_CTX_COARSE", "8"])
    assert exit_info.value.code == 2
    assert f"{trainer}: TRAINER.HIPROMPT.N_CTX_COARSE=8 and N_CTX_FINE=0 must be 0" in capsys.readouterr().out


def test_dualcoop_on_partially_labelled_train2017_images(coco_text, tmp_path, capsys):
    root, _ = coco_text
    out = tmp_path / "dualcoop"
    args = ["--root", str(root), *COCO, *tiny("DualCoOp"), "--seed", "1", "--output-dir", str(out),
            "OPTIM.MAX_EPOCH", "1", "TEST.METRICS", "peer"]
    train.main(args)
    written = results(out)
    assert written["metric_convention"] == "peer" and written["threshold"] == 0.0
    with np.load(out / "partial_labels.npz") as stored:
        known = stored["known"]
    assert known.shape == (126, 80) and abs(known.mean() - 0.5) < 0.02  # LABEL_PORTION 0.5
    assert not list(root.rglob("partial_labels*"))  # nothing written beside the data
    info = json.loads((out / "run_info.json").read_text())
    assert info["train_images"]["labels_known"] == int(known.sum())
    state = load_checkpoint(out, "prompt_learner")["state_dict"]
    assert set(state) == {"positive.vectors.shared", "negative.vectors.shared",
                          "positive.slots_shared", "negative.slots_shared"}
    assert not torch.equal(state["positive.vectors.shared"], state["negative.vectors.shared"])
    # the same run folder with another portion: refused, naming the setting
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train.main(args + ["TRAINER.DUALCOOP.LABEL_PORTION", "0.3", "OPTIM.MAX_EPOCH", "2"])
    assert "partial_labels.npz was made for other partial labels (portion: 0.5 there, 0.3 now)" in capsys.readouterr().out


def test_dualcoop_on_text_and_without_training_images(coco_text, tmp_path, capsys):
    root, knowledge = coco_text
    out = tmp_path / "dualcoop-text"
    train.main(["--root", str(root), *COCO, *tiny("DualCoOp"), "--seed", "1", "--output-dir", str(out),
                "TRAINER.DUALCOOP.TRAIN_DATA", "text", "DATASET.TEXT.DIR", str(knowledge), "OPTIM.MAX_EPOCH", "1"])
    assert results(out)["num_images"] == 128 and not (out / "partial_labels.npz").exists()
    with pytest.raises(SystemExit):
        train.main(["--root", str(root), *COCO, *tiny("DualCoOp"), "--output-dir", str(tmp_path / "x"),
                    "DATASET.TRAIN_SPLIT", ""])
    assert "needs training images: set DATASET.TRAIN_SPLIT" in capsys.readouterr().out
