"""CoOp (Zhou et al., IJCV 2022) trained on the same text: one context shared by all classes
(or one per class, CSC), the global branch only, the ranking loss, no order loss.

It is the hierarchical learner with a CoOp composition (configs/trainers/CoOp/*.yaml):
`TRAINER.HIPROMPT.N_CTX_SHARED 16` (CoOp's default length), or for CSC
`TRAINER.HIPROMPT.N_CTX_SHARED 0 TRAINER.HIPROMPT.N_CTX_CLASS 16`. CoOp's CTX_INIT and
CLASS_TOKEN_POSITION are `TRAINER.HIPROMPT.CTX_INIT` and `.CLASS_TOKEN_POSITION` (hiprompt/config.py).
"""

from hiprompt.registry import TRAINER_REGISTRY
from hiprompt.training.prompt_training import PromptTraining
from hiprompt.training.runtime import TrainerBase


def check_single_context(hp, trainer: str, local_branch: bool) -> None:
    """A composition of one kind (shared or class-specific), the branches the trainer has, no
    order loss; a ValueError naming the settings otherwise."""
    problems = []
    if hp.N_CTX_COARSE or hp.N_CTX_FINE:
        problems.append(f"N_CTX_COARSE={hp.N_CTX_COARSE} and N_CTX_FINE={hp.N_CTX_FINE} must be 0")
    if (hp.N_CTX_SHARED > 0) == (hp.N_CTX_CLASS > 0):
        problems.append(f"exactly one of N_CTX_SHARED={hp.N_CTX_SHARED} (shared) and N_CTX_CLASS="
                        f"{hp.N_CTX_CLASS} (CSC) must be above 0")
    if hp.LOCAL_BRANCH != local_branch:
        problems.append(f"LOCAL_BRANCH must be {local_branch}")
    if hp.ORDER_LOSS:
        problems.append("ORDER_LOSS must be False")
    if problems:
        raise ValueError(f"{trainer}: TRAINER.HIPROMPT." + "; ".join(problems) +
                         f" (configs/trainers/{trainer}/*.yaml sets them)")


@TRAINER_REGISTRY.register()
class CoOp(PromptTraining, TrainerBase):
    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_single_context(cfg.TRAINER.HIPROMPT, "CoOp", local_branch=False)
