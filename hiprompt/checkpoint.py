"""Checkpoints that hold only the learned prompt tokens, written atomically.

Layout (the CoOp convention): `<dir>/<model-name>/model.pth.tar-<epoch>`, epochs counted
from 1. Each file also keeps the optimiser, scheduler and RNG states, so an interrupted run
resumes after the last finished epoch. Loading uses `weights_only=True`.
"""

import logging
import re
from pathlib import Path

import torch

from .fileio import atomic_torch_save

log = logging.getLogger(__name__)
_PATTERN = re.compile(r"^model\.pth\.tar-(\d+)$")


def checkpoint_path(directory, name: str, epoch: int) -> Path:
    return Path(directory) / name / f"model.pth.tar-{epoch}"


def latest_epoch(directory, name: str):
    """The highest saved epoch of model `name` under `directory`, or None."""
    folder = Path(directory) / name
    if not folder.is_dir():
        return None
    epochs = [int(m.group(1)) for p in folder.iterdir() if (m := _PATTERN.match(p.name))]
    return max(epochs) if epochs else None


def save_checkpoint(directory, name: str, epoch: int, model, optimizer=None, scheduler=None) -> Path:
    state = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": torch.get_rng_state(),
    }
    path = checkpoint_path(directory, name, epoch)
    atomic_torch_save(state, path)
    return path


def load_checkpoint(directory, name: str, epoch=None) -> dict:
    """Read `name`'s checkpoint at `epoch` (the latest when None); a clear error if absent."""
    if epoch is None:
        epoch = latest_epoch(directory, name)
        if epoch is None:
            raise FileNotFoundError(
                f"no checkpoint of {name!r} under {directory}: expected "
                f"{Path(directory) / name / 'model.pth.tar-<epoch>'}"
            )
    path = checkpoint_path(directory, name, epoch)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


class PromptCheckpointing:
    """Checkpoint methods with Dassl's names, for the built-in runtime and for Dassl alike
    (Dassl's own call `torch.load` without `weights_only` and write non-atomically)."""

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        for name in self.get_model_names():
            path = save_checkpoint(directory, name, epoch + 1, self._models[name],
                                   self._optims.get(name), self._scheds.get(name))
            log.info("saved %s", path)

    def load_model(self, directory, epoch=None):
        if not directory:
            log.warning("no model directory given: evaluating the initial prompts")
            return
        for name in self.get_model_names():
            state = load_checkpoint(directory, name, epoch)
            try:
                self._models[name].load_state_dict(state["state_dict"])
            except RuntimeError as error:
                raise ValueError(
                    f"the checkpoint in {directory} does not fit these prompts: build them as the "
                    "training run did (same DATASET.TEXT.DIR for the groups, same "
                    f"TRAINER.HIPROMPT.N_CTX_* and LOCAL_BRANCH) ({error})"
                ) from None
            log.info("loaded %s (epoch %d) from %s", name, state["epoch"], directory)

    def resume_model_if_exist(self, directory):
        names = self.get_model_names()
        epochs = [latest_epoch(directory, name) for name in names]
        if not names or any(e is None for e in epochs):
            return 0
        epoch = min(epochs)
        for name in names:
            state = load_checkpoint(directory, name, epoch)
            self._models[name].load_state_dict(state["state_dict"])
            if state["optimizer"] is not None and name in self._optims:
                self._optims[name].load_state_dict(state["optimizer"])
            if state["scheduler"] is not None and self._scheds.get(name) is not None:
                self._scheds[name].load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
        log.info("resumed from %s after epoch %d", directory, epoch)
        return epoch
