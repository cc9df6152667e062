"""DualCoOp (Sun et al., NeurIPS 2022): positive and negative prompts per class, region
aggregation, asymmetric loss; trained on partially labelled images as published, or on the
LLM text (`TRAINER.DUALCOOP.TRAIN_DATA`). The logic lives in `hiprompt.baselines.dualcoop_training`.
"""

from hiprompt.baselines.dualcoop_training import DualCoOpTraining
from hiprompt.registry import TRAINER_REGISTRY
from hiprompt.training.runtime import TrainerBase


@TRAINER_REGISTRY.register()
class DualCoOp(DualCoOpTraining, TrainerBase):
    pass
