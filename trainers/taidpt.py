"""TaI-DPT (Guo et al., CVPR 2023): double-grained prompts, a global and a local context shared
by all classes, the ranking loss on both, no order loss, TaI-DPT's schedule
(configs/trainers/TaIDPT/*.yaml). Its training text is image captions: a knowledge folder made
by `python -m llm_knowledge.captions`. TaI-DPT picks its checkpoint by the best test score;
here the last epoch is evaluated.
"""

from hiprompt.registry import TRAINER_REGISTRY
from hiprompt.training.prompt_training import PromptTraining
from hiprompt.training.runtime import TrainerBase
from trainers.coop import check_single_context


@TRAINER_REGISTRY.register()
class TaIDPT(PromptTraining, TrainerBase):
    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_single_context(cfg.TRAINER.HIPROMPT, "TaIDPT", local_branch=True)
