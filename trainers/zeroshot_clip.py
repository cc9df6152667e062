"""ZeroshotCLIP: the hand-crafted prompts (all context counts 0), global and dense scores fused."""

from hiprompt.registry import TRAINER_REGISTRY
from hiprompt.training.prompt_training import PromptTraining
from hiprompt.training.runtime import TrainerBase


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(PromptTraining, TrainerBase):
    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        hp = cfg.TRAINER.HIPROMPT
        counts = (hp.N_CTX_SHARED, hp.N_CTX_COARSE, hp.N_CTX_FINE, hp.N_CTX_CLASS)
        if any(counts):
            raise ValueError(
                f"ZeroshotCLIP uses the hand-crafted prompts: TRAINER.HIPROMPT.N_CTX_* must all be 0 "
                f"(got {counts}; configs/trainers/ZeroshotCLIP/*.yaml sets them)"
            )
