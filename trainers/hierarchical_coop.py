"""HierarchicalCoOp: hierarchical prompts learned on LLM text for a frozen CLIP (the paper's method).

A CoOp-style plug-in: importing this module registers the trainer in Dassl's registry when
Dassl is installed, otherwise in hiprompt's built-in one. The logic lives in `hiprompt.training.prompt_training`.
"""

from hiprompt.registry import TRAINER_REGISTRY
from hiprompt.training.prompt_training import PromptTraining
from hiprompt.training.runtime import TrainerBase


@TRAINER_REGISTRY.register()
class HierarchicalCoOp(PromptTraining, TrainerBase):
    """Context-token composition from TRAINER.HIPROMPT.N_CTX_*: the defaults are the paper's
    16 shared / 8 coarse-group / 4 fine-group / 4 class-specific tokens."""
