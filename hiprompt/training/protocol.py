"""Which epoch's prompts a run reports, and on which images it picks them (`TEST.PROTOCOL`).

- `paper` (this project's): the prompts of the last epoch, on the whole test set as read.
- `peer`: the model selection and data conventions of the peers' code, so that a table can
  show their protocol beside ours. Every saved epoch is scored on a selection subset of the
  test set by the peers' mAP (`hiprompt.training.metrics.peer_metrics`: every class, ties
  ranked by order); the first epoch with the highest score (their `curr > best`, kept only
  when strictly better) is evaluated on the whole test set.
  - TaI-DPT (its `Caption_distill_double` trainer, and the CoOp-family trainers here, whose
    published setting follows it): Dassl's `after_epoch` scores `val` after every epoch and
    keeps `model-best.pth.tar` (`TEST.FINAL_MODEL best_val` in its configs), where `val` is
    a strided slice of the test list: `test[0::10]` on COCO (`datasets/coco2014_distill.py`),
    `test[0::20]` on NUS-WIDE (`datasets/nuswide_distill.py`), the whole test set on VOC2007
    (`datasets/voc2007_distill.py`, `val=test`); other data sets here take its COCO stride.
  - DualCoOp (`train.py`): validates after every epoch (`--val_every_n_epochs 1`) on
    `VAL_SPLIT`, which is its `TEST_SPLIT` (`configs/datasets/*.yaml`), keeps
    `model_best.pth.tar` when `mAP > best_mAP` and tests it; its COCO loader keeps only the
    images with an annotation (`ids = list(self.coco.imgToAnns.keys())`,
    `dataloaders/coco_detection.py`), for training and test alike (`keep_unannotated`).

DualCoOp's best score starts at 0 and TaI-DPT's at -inf, which differ only when every epoch
scores 0. The selection reads the run's saved checkpoints once training is over, so it needs
one of every epoch (`TRAIN.CHECKPOINT_FREQ 1`, the default), changes no training step, and
works on a finished run with `--eval-only` (where it overrides `--load-epoch`).
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

PROTOCOLS = ("paper", "peer")  # TEST.PROTOCOL

# TaI-DPT's validation slice of its test list, per data set (DATASET.NAME here): test[0::stride]
TAIDPT_STRIDES = {"COCO": 10, "NUSWIDE": 20, "VOC2007": 1}
TAIDPT_DEFAULT_STRIDE = 10  # any other data set: its COCO rule


@dataclass(frozen=True)
class PeerSelection:
    """How a peer picks its epoch: `peer` whose code it is, `stride` (the selection images are
    rows 0, stride, 2 stride, ... of the test set) and whether COCO images without an
    annotation are left out of its images (`drop_unannotated`)."""

    peer: str
    stride: int
    drop_unannotated: bool

    def describe(self) -> str:
        images = "the whole test set" if self.stride == 1 else f"every {self.stride}th test image from the first"
        return f"{self.peer}'s: the first best epoch by the peers' mAP on {images}"


def peer_selection(trainer: str, dataset: str) -> PeerSelection:
    """The peer protocol of `trainer` (TRAINER.NAME) on `dataset` (DATASET.NAME)."""
    if trainer == "DualCoOp":
        return PeerSelection("DualCoOp", 1, dataset == "COCO")
    return PeerSelection("TaI-DPT", TAIDPT_STRIDES.get(dataset, TAIDPT_DEFAULT_STRIDE), False)


def keep_unannotated(cfg) -> bool:
    """Whether a COCO image set keeps its images without an annotation: DATASET.KEEP_UNANNOTATED,
    except under TEST.PROTOCOL peer for DualCoOp, whose loader drops them."""
    protocol = (cfg.get("TEST") or {}).get("PROTOCOL", "paper")
    if protocol == "peer" and peer_selection(cfg.TRAINER.NAME, cfg.DATASET.NAME).drop_unannotated:
        return False
    return bool(cfg.DATASET.KEEP_UNANNOTATED)


def selection_rows(count: int, stride: int) -> np.ndarray:
    """The rows of a test set of `count` images that a peer selects on: `test[0::stride]`."""
    return np.arange(0, count, stride)


def choose_epoch(scores: dict) -> Optional[int]:
    """The epoch both peers keep from {epoch: score}: scanning epochs in order, the best so far
    is replaced only by a strictly higher score, so the first of equal best scores wins (NaN
    never). None for no scores."""
    best, chosen = -np.inf, None
    for epoch in sorted(scores):
        if scores[epoch] > best:
            best, chosen = scores[epoch], epoch
    return chosen
