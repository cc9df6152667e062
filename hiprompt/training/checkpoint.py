"""Checkpoints that hold only the learned prompt tokens, written atomically.

Layout (the CoOp convention): `<dir>/<model-name>/model.pth.tar-<epoch>`, epochs counted
from 1. Each file also keeps the optimiser, scheduler and RNG states, so an interrupted run
resumes after the last finished epoch, and `run`: the trainer's fingerprint of what
determines the learned prompts (settings, knowledge-folder content, backbone identity,
classes, groups). A resume with another fingerprint is refused, naming the differences.
Loading uses `weights_only=True`; a file that cannot be read is named as damaged.
"""

import logging
import pickle
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from hiprompt.config import get_cfg_default, result_settings
from hiprompt.fileio import atomic_torch_save

log = logging.getLogger(__name__)
_PATTERN = re.compile(r"^model\.pth\.tar-(\d+)$")
PROMPTS_MODEL = "prompt_learner"  # the model name the learned prompts are saved under (CoOp's)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that another run's settings made."""


def checkpoint_path(directory, name: str, epoch: int) -> Path:
    return Path(directory) / name / f"model.pth.tar-{epoch}"


def checkpoint_epoch(path):
    """The epoch in a checkpoint file's name (`model.pth.tar-<epoch>`), or None (no path, or
    another name)."""
    match = _PATTERN.match(Path(path).name) if path else None
    return int(match.group(1)) if match else None


def saved_epochs(directory, name: str) -> list:
    """The saved epochs of model `name` under `directory`, ascending."""
    folder = Path(directory) / name
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _PATTERN.match(p.name)))


def latest_epoch(directory, name: str):
    """The highest saved epoch of model `name` under `directory`, or None."""
    epochs = saved_epochs(directory, name)
    return epochs[-1] if epochs else None


def save_checkpoint(directory, name: str, epoch: int, model, optimizer=None, scheduler=None, run=None) -> Path:
    state = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": torch.get_rng_state(),
        "run": run,
    }
    path = checkpoint_path(directory, name, epoch)
    atomic_torch_save(state, path)
    return path


def _damaged(directory, name: str, epoch: int, reason: str) -> CheckpointError:
    earlier = [e for e in saved_epochs(directory, name) if e < epoch]
    if earlier:
        offer = (f"the previous checkpoint is {checkpoint_path(directory, name, earlier[-1])} (epoch "
                 f"{earlier[-1]}): delete the damaged file to resume from it, or pass --load-epoch "
                 f"{earlier[-1]} to evaluate it")
    else:
        offer = "there is no earlier checkpoint: delete it and train again"
    return CheckpointError(f"{checkpoint_path(directory, name, epoch)} is damaged ({reason}); {offer}")


def load_checkpoint(directory, name: str, epoch=None) -> dict:
    """Read `name`'s checkpoint at `epoch` (the latest when None); a clear error if absent
    or damaged."""
    if epoch is None:
        epoch = latest_epoch(directory, name)
        if epoch is None:
            raise FileNotFoundError(
                f"no checkpoint of {name!r} under {directory}: expected "
                f"{Path(directory) / name / 'model.pth.tar-<epoch>'}"
            )
    try:
        return read_checkpoint(checkpoint_path(directory, name, epoch))
    except CheckpointError as error:
        raise _damaged(directory, name, epoch, str(error)) from None


def read_checkpoint(path) -> dict:
    """One checkpoint file, read with `weights_only=True`: FileNotFoundError when absent,
    CheckpointError (the reason) when it is not a readable prompt checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as error:
        # what torch raises for a truncated, an empty and a foreign file
        raise CheckpointError(f"unreadable as a checkpoint: {type(error).__name__}") from None
    if not isinstance(state, dict) or not {"state_dict", "epoch"} <= set(state):
        raise CheckpointError("a readable file, but not a prompt checkpoint")
    return state


def _short(value) -> str:
    if isinstance(value, str) and len(value) > 40:  # a digest
        return repr(value[:12] + "...")
    if isinstance(value, list) and len(value) > 6:
        return f"[{', '.join(map(repr, value[:6]))}, ... ({len(value)} in all)]"
    return repr(value)


FINGERPRINT_PARTS = ("settings", "knowledge", "backbone", "classes", "groups")


def run_differences(saved, current, epoch: int, parts=FINGERPRINT_PARTS) -> list:
    """What differs between the fingerprint a checkpoint of `epoch` recorded (`saved`) and
    this run's (`current`), one readable item each, over `parts` of the fingerprint.

    OPTIM.MAX_EPOCH may differ while the checkpoint's epoch is within the new count and the
    schedule does not depend on it (not cosine): training then goes on as an uninterrupted
    run of the new length would have. A setting the checkpoint predates (added to the schema
    later) is no difference while it has its default, the behaviour from before it existed.
    """
    defaults = result_settings(get_cfg_default())
    if saved is None:
        return ["the checkpoint records no settings (written before runs were fingerprinted)"]
    names = {"knowledge": "knowledge-folder content (SHA-256 of DATASET.TEXT.DIR's files)",
             "backbone": "backbone identity", "classes": "classes", "groups": "prompt groups (groups.json)"}
    differences = []
    for part in parts:
        old, new = saved.get(part), current.get(part)
        if part != "settings":
            if old != new:
                differences.append(f"{names[part]}: {_short(old)} there, {_short(new)} now")
            continue
        for key in sorted(set(old) | set(new)):
            before, after = old.get(key, "(absent)"), new.get(key, "(absent)")
            extended = (key == "OPTIM.MAX_EPOCH" and new.get("OPTIM.LR_SCHEDULER") != "cosine"
                        and isinstance(after, int) and after >= epoch)
            predated = key not in old and key in defaults and after == defaults[key]
            if before != after and not extended and not predated:
                differences.append(f"{key}: {before!r} there, {after!r} now")
    return differences


@runtime_checkable
class CheckpointHost(Protocol):
    """What `PromptCheckpointing` needs of the trainer it is mixed into: the runtime's model
    registry (Dassl's `register_model` fills these) and the trainer's `fingerprint`."""

    fingerprint: dict  # FINGERPRINT_PARTS -> what determines the learned prompts
    _models: dict  # name -> module
    _optims: dict  # name -> optimiser or None
    _scheds: dict  # name -> scheduler or None

    def get_model_names(self, names=None) -> list: ...


class PromptCheckpointing:
    """Checkpoint methods with Dassl's names, for the built-in runtime and for Dassl alike
    (Dassl's own call `torch.load` without `weights_only` and write non-atomically). Mixed
    into a `CheckpointHost`.
    """

    prompts_from = None  # the checkpoint the prompts now in memory were saved to or loaded from

    def save_model(self: CheckpointHost, epoch, directory, is_best=False, val_result=None, model_name=""):
        """Save each model's checkpoint of `epoch` (from 0); prompts that are no longer finite
        (a diverged training) are refused before anything is written."""
        for name in self.get_model_names():
            if not all(torch.isfinite(v).all() for v in self._models[name].state_dict().values()):
                raise CheckpointError(f"the {name} weights are not finite after epoch {epoch + 1} (training "
                                      f"diverged), so no checkpoint of it was saved; lower OPTIM.LR and train again")
        for name in self.get_model_names():
            path = save_checkpoint(directory, name, epoch + 1, self._models[name], self._optims.get(name),
                                   self._scheds.get(name), run=self.fingerprint)
            log.info("saved %s", path)
            self.prompts_from = str(path)

    def load_model(self: CheckpointHost, directory, epoch=None):
        """Load the learned prompts for evaluation. Evaluation settings may differ from the
        training run's; what gives the tokens their meaning (backbone, classes, groups) may not."""
        if not directory:
            log.warning("no model directory given: evaluating the initial prompts")
            return
        for name in self.get_model_names():
            state = load_checkpoint(directory, name, epoch)
            path = checkpoint_path(directory, name, state["epoch"])
            if state.get("run") is None:
                log.warning("%s records no settings (an older checkpoint): its backbone, classes and "
                            "groups cannot be checked against this run's", path)
            else:
                differences = run_differences(state["run"], self.fingerprint, state["epoch"],
                                              parts=("backbone", "classes", "groups"))
                if differences:
                    raise CheckpointError(
                        f"{path} was trained for other prompts than this run builds: {'; '.join(differences)}; "
                        "evaluate it with the training run's backbone, knowledge folder and class set"
                    )
            try:
                self._models[name].load_state_dict(state["state_dict"])
            except RuntimeError as error:
                raise ValueError(
                    f"the checkpoint in {directory} does not fit these prompts: build them as the "
                    "training run did (same DATASET.TEXT.DIR for the groups, same "
                    f"TRAINER.HIPROMPT.N_CTX_* and LOCAL_BRANCH) ({error})"
                ) from None
            log.info("loaded %s (epoch %d) from %s", name, state["epoch"], directory)
            self.prompts_from = str(path)

    def resume_model_if_exist(self: CheckpointHost, directory):
        """Resume after the last epoch saved under `directory`, if any; refused when the run
        that saved it had other settings (nothing is loaded or written then)."""
        names = self.get_model_names()
        epochs = [latest_epoch(directory, name) for name in names]
        if not names or any(e is None for e in epochs):
            return 0
        epoch = min(epochs)
        states = {name: load_checkpoint(directory, name, epoch) for name in names}
        for name, state in states.items():
            differences = run_differences(state.get("run"), self.fingerprint, epoch)
            if differences:
                raise CheckpointError(
                    f"cannot resume {checkpoint_path(directory, name, epoch)} (epoch {epoch}): it was "
                    f"trained with other settings: {'; '.join(differences)}. To start fresh, pass another "
                    f"--output-dir (or delete {Path(directory) / name}); to continue it, run with the "
                    f"settings in {Path(directory) / 'run_info.json'}"
                )
        for name, state in states.items():
            self._models[name].load_state_dict(state["state_dict"])
            if state["optimizer"] is not None and name in self._optims:
                self._optims[name].load_state_dict(state["optimizer"])
            if state["scheduler"] is not None and self._scheds.get(name) is not None:
                self._scheds[name].load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            self.prompts_from = str(checkpoint_path(directory, name, epoch))
        log.info("resumed from %s after epoch %d", directory, epoch)
        return epoch
