"""DualCoOp (Sun et al., NeurIPS 2022): positive and negative prompts per class, region
aggregation, asymmetric loss; trained on partially labelled images as published, or on the
LLM text (`TRAINER.DUALCOOP.TRAIN_DATA`). The logic lives in `hiprompt.baselines.dualcoop_training`.
"""

from hiprompt.baselines.dualcoop_training import DualCoOpImageTraining, DualCoOpTraining
from hiprompt.registry import TRAINER_REGISTRY
from hiprompt.training.runtime import TrainerBase


class DualCoOpOnText(DualCoOpTraining, TrainerBase):
    pass


class DualCoOpOnImages(DualCoOpImageTraining, TrainerBase):
    pass


@TRAINER_REGISTRY.register()
def DualCoOp(cfg):  # noqa: N802  (the trainer's registered name)
    """The DualCoOp trainer for TRAINER.DUALCOOP.TRAIN_DATA: images or text."""
    return (DualCoOpOnImages if cfg.TRAINER.DUALCOOP.TRAIN_DATA == "images" else DualCoOpOnText)(cfg)
