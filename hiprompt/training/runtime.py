"""A small Dassl-shaped runtime: `TrainerX` and `build_trainer`.

With Dassl installed, `TrainerBase` is Dassl's own `TrainerX` and trainers plug into its
loop; without it, `BuiltinTrainerX` below runs the same methods in the same order
(`build_data_loader`, `build_model`, then per epoch `run_epoch` -> `forward_backward`,
checkpoints, and `test` at the end).
"""

import logging
import math
import random
import time
from collections import OrderedDict
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from hiprompt.registry import EVALUATOR_REGISTRY, TRAINER_REGISTRY, USING_DASSL, lookup
from hiprompt.training.checkpoint import PromptCheckpointing

log = logging.getLogger(__name__)


@runtime_checkable
class TrainerRuntime(Protocol):
    """What the trainers' shared logic (`hiprompt.training.prompt_training.PromptTraining` and
    the baselines') needs of the runtime it is mixed with: Dassl's `TrainerX`, or
    `BuiltinTrainerX` below. The logic implements Dassl's hooks (`build_data_loader`,
    `build_model`, `before_train`, `before_epoch`, `forward_backward`, `test`) and calls these."""

    cfg: object  # the validated config (hiprompt.config)
    device: torch.device
    output_dir: str
    epoch: int  # during training: the epoch running, from 0
    batch_idx: int  # during an epoch: the batch running, from 0
    num_batches: int
    evaluator: object  # TEST.EVALUATOR's, with reset / process / evaluate
    prompts_from: object  # the checkpoint file the prompts in memory came from, or None (PromptCheckpointing)

    def register_model(self, name="model", model=None, optim=None, sched=None) -> None: ...

    def model_backward_and_update(self, loss, names=None) -> None: ...

    def update_lr(self, names=None) -> None: ...

    def before_train(self) -> None: ...

    def before_epoch(self) -> None: ...


def set_random_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def select_device(cfg) -> torch.device:
    return torch.device("cuda" if cfg.USE_CUDA and torch.cuda.is_available() else "cpu")


def prompt_autocast(precision: str, device: torch.device):
    """The autocast the prompt encoder runs under for TRAINER.HIPROMPT.PREC `precision`
    (config.PRECISIONS): bf16 for `bf16`, and for `auto` on CUDA; otherwise none."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


class BuiltinTrainerX(PromptCheckpointing):
    """The subset of Dassl's `TrainerX` that this project's trainers use."""

    def __init__(self, cfg):
        self.check_cfg(cfg)  # as Dassl's trainers do
        self.cfg = cfg
        self.device = select_device(cfg)
        self.output_dir = cfg.OUTPUT_DIR
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self._models, self._optims, self._scheds = OrderedDict(), OrderedDict(), OrderedDict()
        self.build_data_loader()
        self.build_model()
        evaluator = lookup(EVALUATOR_REGISTRY, cfg.TEST.EVALUATOR, "TEST.EVALUATOR")
        self.evaluator = evaluator(cfg, lab2cname=self.lab2cname)

    def check_cfg(self, cfg):
        """Dassl's hook: reject settings the trainer cannot use, before anything is built."""

    # -- models -------------------------------------------------------------------------
    def register_model(self, name="model", model=None, optim=None, sched=None):
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None):
        return list(self._models) if names is None else list(names)

    def set_model_mode(self, mode="train", names=None):
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def model_zero_grad(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward_and_update(self, loss, names=None):
        self.model_zero_grad(names)
        loss.backward()
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def update_lr(self, names=None):
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def get_current_lr(self, names=None):
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]

    # -- loop ---------------------------------------------------------------------------
    def train(self):
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        directory = self.cfg.RESUME or self.output_dir
        self.start_epoch = self.resume_model_if_exist(directory)
        self.time_start = time.time()

    def before_epoch(self):
        pass

    def run_epoch(self):
        self.set_model_mode("train")
        self.num_batches = len(self.train_loader_x)
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            summary = self.forward_backward(batch)
            step = self.batch_idx + 1
            if not all(math.isfinite(v) for v in summary.values()):
                values = ", ".join(f"{k} {v:.4g}" for k, v in summary.items())
                raise ValueError(f"the training loss is not finite in epoch {self.epoch + 1}/{self.max_epoch}, "
                                 f"batch {step}/{self.num_batches} ({values}): training diverged; lower OPTIM.LR "
                                 f"(now {self.cfg.OPTIM.LR:g}); nothing of this epoch was saved")
            if step % self.cfg.TRAIN.PRINT_FREQ == 0 or step == self.num_batches:
                values = " ".join(f"{k} {v:.4f}" for k, v in summary.items())
                log.info("epoch [%d/%d] batch [%d/%d] %s lr %.3e", self.epoch + 1,
                         self.max_epoch, step, self.num_batches, values, self.get_current_lr())

    def after_epoch(self):
        last = self.epoch + 1 == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        if last or (freq > 0 and (self.epoch + 1) % freq == 0):
            self.save_model(self.epoch, self.output_dir)

    def after_train(self):
        log.info("training took %.1f s", time.time() - self.time_start)
        if not self.cfg.TEST.NO_TEST:
            self.test()


if USING_DASSL:
    from dassl.engine import TrainerX as _DasslTrainerX

    class TrainerBase(PromptCheckpointing, _DasslTrainerX):
        """Dassl's TrainerX with this project's checkpoint handling."""

else:
    TrainerBase = BuiltinTrainerX


def registered_trainer(cfg):
    """The trainer (a class, or a function choosing one) registered as `cfg.TRAINER.NAME`; a
    ValueError naming what is registered otherwise. train.py asks before it makes the run folder."""
    if not cfg.TRAINER.NAME:
        raise ValueError("TRAINER.NAME is empty: pass --trainer (e.g. HierarchicalCoOp, ZeroshotCLIP)")
    return lookup(TRAINER_REGISTRY, cfg.TRAINER.NAME, "TRAINER.NAME (--trainer)")


def build_trainer(cfg):
    """Instantiate the trainer registered as `cfg.TRAINER.NAME`."""
    trainer = registered_trainer(cfg)
    if USING_DASSL:
        from dassl.engine import build_trainer as dassl_build_trainer

        return dassl_build_trainer(cfg)
    return trainer(cfg)
