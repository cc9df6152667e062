"""TEST.PROTOCOL: the epoch the peers' code keeps, on the images it keeps it on, checked
against their loops written out here (TaI-DPT 1333eca: Dassl.pytorch-master/dassl/engine/
trainer.py `after_epoch`, datasets/*_distill.py `val=`; DualCoOp 49e71d7: train.py,
dataloaders/coco_detection.py, utils/helper.py `average_precision`)."""

import json

import numpy as np
import pytest
from PIL import Image
from test_trainer import make_cfg, make_text_world

from hiprompt.config import ConfigError, get_cfg_default, validate_cfg
from hiprompt.training.protocol import choose_epoch, keep_unannotated, peer_selection, selection_rows
from hiprompt.training.runtime import build_trainer


def taidpt_keeps(per_epoch):
    """TaI-DPT's Dassl `after_epoch`: best_result = -np.inf; is_best = curr_result > best_result."""
    best_result, kept = -np.inf, None
    for epoch, curr_result in enumerate(per_epoch):
        if curr_result > best_result:
            best_result = curr_result
            kept = epoch + 1  # save_model(self.epoch, ...) writes "epoch": epoch + 1
    return kept


def dualcoop_keeps(per_epoch):
    """DualCoOp's train.py: best_mAP = 0; is_best = mAP_score > best_mAP; save_dict epoch + 1."""
    best_mAP, kept = 0, None
    for epoch, mAP_score in enumerate(per_epoch):
        if mAP_score > best_mAP:
            best_mAP = mAP_score
            kept = epoch + 1
    return kept


def authors_average_precision(output, target):
    """utils/helper.py (DualCoOp) = dassl/evaluation/evaluator.py (TaI-DPT), as written there."""
    epsilon = 1e-8
    indices = output.argsort()[::-1]
    total_count_ = np.cumsum(np.ones((len(output), 1)))
    target_ = target[indices]
    ind = target_ == 1
    pos_count_ = np.cumsum(ind)
    total = pos_count_[-1]
    pos_count_[np.logical_not(ind)] = 0
    pp = pos_count_ / total_count_
    return np.sum(pp) / (total + epsilon)


def authors_map(targs, preds):
    return 100 * np.mean([authors_average_precision(preds[:, k], targs[:, k]) for k in range(preds.shape[1])])


@pytest.mark.parametrize("per_epoch", [
    [50.0, 52.5, 52.5, 51.0, 53.0, 53.0],  # the first of equal best scores
    [61.0, 60.0, 59.0],  # the first epoch
    [40.0, 40.0, 40.0],  # all equal
    [10.0, 20.0, 30.0, 31.0],  # the last
])
def test_the_chosen_epoch_is_the_one_both_peers_keep(per_epoch):
    scores = {epoch + 1: value for epoch, value in enumerate(per_epoch)}
    assert choose_epoch(scores) == taidpt_keeps(per_epoch) == dualcoop_keeps(per_epoch)
    assert choose_epoch({}) is None


def test_selection_images_are_the_peers_slices_of_the_test_list():
    test = [f"img{i}" for i in range(47)]  # the test list in its order
    coco, nus, voc = (peer_selection("TaIDPT", name) for name in ("COCO", "NUSWIDE", "VOC2007"))
    assert [test[i] for i in selection_rows(len(test), coco.stride)] == test[0::10]  # coco2014_distill.py
    assert [test[i] for i in selection_rows(len(test), nus.stride)] == test[0::20]  # nuswide_distill.py
    assert [test[i] for i in selection_rows(len(test), voc.stride)] == test  # voc2007_distill.py: val=test
    for trainer in ("HierarchicalCoOp", "CoOp"):  # the CoOp family follows TaI-DPT
        assert peer_selection(trainer, "COCO") == coco
    dualcoop = peer_selection("DualCoOp", "COCO")  # VAL_SPLIT == TEST_SPLIT: the whole test set
    assert [test[i] for i in selection_rows(len(test), dualcoop.stride)] == test and dualcoop.drop_unannotated
    assert not peer_selection("DualCoOp", "VOC2007").drop_unannotated and not coco.drop_unannotated


def test_protocol_is_a_checked_choice():
    cfg = get_cfg_default()
    assert cfg.TEST.PROTOCOL == "paper"
    cfg.TEST.PROTOCOL = "best"
    with pytest.raises(ConfigError, match="TEST.PROTOCOL='best': expected one of paper, peer"):
        validate_cfg(cfg)


def coco_root(tmp_path):
    """A COCO layout of four images, the second without an annotation, annotations not in image order."""
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2014").mkdir()
    images = [{"id": 10 + i, "file_name": f"{i}.jpg"} for i in range(4)]
    annotations = [{"id": 1, "image_id": 13, "category_id": 2}, {"id": 2, "image_id": 10, "category_id": 1},
                   {"id": 3, "image_id": 12, "category_id": 1}, {"id": 4, "image_id": 13, "category_id": 1}]
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    (tmp_path / "annotations" / "instances_val2014.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    for image in images:
        Image.new("RGB", (8, 8)).save(tmp_path / "val2014" / image["file_name"])
    return tmp_path, images, annotations


def test_dualcoop_peer_drops_the_coco_images_its_loader_drops(tmp_path):
    from datasets.coco import COCO

    root, images, annotations = coco_root(tmp_path)
    imgToAnns = {}  # pycocotools' COCO.createIndex: imgToAnns[ann['image_id']].append(ann)
    for ann in annotations:
        imgToAnns.setdefault(ann["image_id"], []).append(ann)
    dualcoop_files = {image["file_name"] for image in images if image["id"] in list(imgToAnns.keys())}

    def read(trainer, protocol):
        cfg = get_cfg_default()
        cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.TRAINER.NAME, cfg.TEST.PROTOCOL = str(root), "COCO", trainer, protocol
        assert keep_unannotated(cfg) == (not (trainer == "DualCoOp" and protocol == "peer"))
        return {path.rsplit("/", 1)[-1] for path in COCO(cfg).test.image_paths}

    assert read("DualCoOp", "peer") == dualcoop_files == {"0.jpg", "2.jpg", "3.jpg"}
    everything = {image["file_name"] for image in images}  # TaI-DPT's COCO2014_distill: coco.getImgIds()
    assert read("DualCoOp", "paper") == read("TaIDPT", "peer") == read("HierarchicalCoOp", "peer") == everything


def test_peer_run_reports_the_epoch_the_authors_loop_keeps(tmp_path):
    world = make_text_world(tmp_path, n_images=80)
    training = ("OPTIM.MAX_EPOCH", "4", "OPTIM.LR", "0.5", "OPTIM.STEPSIZE", "(3, 4)")
    out = tmp_path / "peer"
    build_trainer(make_cfg("HierarchicalCoOp", world, out, *training, "TEST.PROTOCOL", "peer")).train()
    peer = json.loads((out / "results_test.json").read_text())

    # each epoch's prompts scored on the whole test set, independently of the selection code
    per_epoch, tests = [], {}
    for epoch in range(1, 5):
        folder = tmp_path / f"epoch{epoch}"
        trainer = build_trainer(make_cfg("HierarchicalCoOp", world, folder, *training, "TEST.SAVE_SCORES", "True"))
        trainer.load_model(str(out), epoch=epoch)
        trainer.test()
        saved = np.load(folder / "scores_test.npz")
        rows = np.arange(len(saved["scores"]))[0::10]  # custom data: TaI-DPT's COCO slice, test[0::10]
        per_epoch.append(authors_map(saved["labels"][rows], saved["scores"][rows]))
        tests[epoch] = json.loads((folder / "results_test.json").read_text())
    assert len(set(np.round(per_epoch, 6))) > 1, per_epoch  # the epochs differ, so the choice is tested
    kept = taidpt_keeps(per_epoch)
    print("per-epoch selection mAP", per_epoch, "kept", kept)
    assert peer["protocol"] == "peer" and peer["epoch"] == kept
    assert peer["checkpoint"].endswith(f"model.pth.tar-{kept}")
    assert peer["selection"]["images"] == 8 and peer["selection"]["peer"] == "TaI-DPT"
    assert [peer["selection"]["epoch_mAP"][str(e)] for e in range(1, 5)] == pytest.approx(per_epoch, abs=1e-6)
    assert peer["metrics"] == pytest.approx(tests[kept]["metrics"])
    assert tests[4]["protocol"] == "paper" and tests[4]["epoch"] == 4 and tests[4]["selection"] is None


def test_peer_needs_every_epochs_checkpoint(tmp_path):
    world = make_text_world(tmp_path)
    cfg = make_cfg("HierarchicalCoOp", world, tmp_path / "run", "OPTIM.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_FREQ", "0",
                   "TEST.PROTOCOL", "peer")
    with pytest.raises(ValueError, match=r"epochs \[1, 2\]: train with TRAIN.CHECKPOINT_FREQ 1"):
        build_trainer(cfg).train()
