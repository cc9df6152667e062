"""DualCoOp (Sun et al., NeurIPS 2022): positive and negative prompts per class, region
aggregation, asymmetric loss; trained on partially labelled images as published, or on the
LLM text (`TRAINER.DUALCOOP.TRAIN_DATA`). The logic lives in `hiprompt.baselines.dualcoop_training`.
"""

from hiprompt.baselines.dualcoop_training import DualCoOpImageTraining, DualCoOpTraining
from hiprompt.registry import TRAINER_REGISTRY
from hiprompt.training.runtime import TrainerBase


@TRAINER_REGISTRY.register()
class DualCoOp(DualCoOpTraining, TrainerBase):
    """DualCoOp on text; built with TRAIN_DATA images, it is a `DualCoOpOnImages`."""

    def __new__(cls, cfg):
        on_images = cls is DualCoOp and cfg.TRAINER.DUALCOOP.TRAIN_DATA == "images"
        return super().__new__(DualCoOpOnImages if on_images else cls)


class DualCoOpOnImages(DualCoOpImageTraining, DualCoOp):
    """DualCoOp as published: on the training images with partial labels."""
