"""Resume and eval-only checks over every key: each setting that shapes training (every key of
the schema not in `RESUME_NEUTRAL`), changed in turn, is refused on resume, naming it; the
fingerprint's other parts too; an evaluation-only load compares backbone, classes and groups
only, and refuses classes regrouped into the same number of slots (whose prompts would load
without a shape error)."""

import pytest
import torch
from torch import nn

from hiprompt.config import RESUME_NEUTRAL, get_cfg_default, result_settings
from hiprompt.training.checkpoint import (CheckpointError, PromptCheckpointing, run_differences,
                                          save_checkpoint)

DEFAULTS = result_settings(get_cfg_default())


def changed(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 + 0.125
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value[:-1], value[-1] + 1]
    raise TypeError(type(value))


# settings that certainly shape the learned prompts: none may be treated as neutral
SHAPING = [
    "SEED", "DATASET.TEXT.KIND", "DATASET.TEXT.LABELS", "DATASET.TEXT.HOLDOUT", "DATALOADER.TRAIN_X.BATCH_SIZE",
    "OPTIM.NAME", "OPTIM.LR", "OPTIM.WEIGHT_DECAY", "OPTIM.MOMENTUM", "OPTIM.MAX_EPOCH", "OPTIM.LR_SCHEDULER",
    "OPTIM.STEPSIZE", "OPTIM.GAMMA", "OPTIM.WARMUP_EPOCH", "OPTIM.WARMUP_TYPE", "OPTIM.WARMUP_CONS_LR",
    "OPTIM.WARMUP_MIN_LR", "TRAINER.NAME", *(f"TRAINER.HIPROMPT.{k}" for k in (
        "N_CTX_SHARED", "N_CTX_COARSE", "N_CTX_FINE", "N_CTX_CLASS", "CTX_STD", "CTX_INIT", "CLASS_TOKEN_POSITION",
        "TEMPLATE", "LEARNED_NAME", "LOCAL_BRANCH", "ORDER_LOSS", "LAMBDA_ORDER", "ORDER_TEMP", "ORDER_DIRECTION",
        "MARGIN", "RANK_REDUCTION", "LOGIT_SCALE", "TAU_TEXT", "TEXT_START_TOKEN", "PREC")),
]


def test_every_shaping_setting_is_fingerprinted_and_the_neutral_ones_are_not():
    assert set(SHAPING) <= set(DEFAULTS), sorted(set(SHAPING) - set(DEFAULTS))
    for neutral in ("OUTPUT_DIR", "TRAINER.HIPROMPT.LAMBDA_FUSE", "TRAINER.HIPROMPT.TAU_IMAGE", "TEST.METRICS",
                    "INPUT.SIZE", "DATALOADER.NUM_WORKERS", "TRAINER.HIPROMPT.PROMPT_ENCODING"):
        assert neutral not in DEFAULTS
        assert any(neutral == k or (k.endswith(".") and neutral.startswith(k)) for k in RESUME_NEUTRAL)


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_a_resume_with_any_shaping_setting_changed_is_refused_naming_it(key):
    saved = {"settings": dict(DEFAULTS)}
    now = {"settings": {**DEFAULTS, key: changed(DEFAULTS[key])}}
    epoch = 1
    if key == "OPTIM.MAX_EPOCH":  # more epochs may extend a run; fewer than those done may not
        now["settings"][key], epoch = DEFAULTS[key] - 1, DEFAULTS[key]
    assert run_differences(saved, now, epoch, parts=("settings",)) == [
        f"{key}: {DEFAULTS[key]!r} there, {now['settings'][key]!r} now"]
    assert run_differences(saved, {"settings": dict(DEFAULTS)}, epoch, parts=("settings",)) == []


def test_dualcoop_fingerprints_its_own_settings_too():
    from hiprompt.baselines.dualcoop_training import DualCoOpTraining

    host = object.__new__(DualCoOpTraining)
    host.cfg = get_cfg_default()
    settings = host.fingerprint_settings()
    for key, value in get_cfg_default().TRAINER.DUALCOOP.items():
        assert settings[f"TRAINER.DUALCOOP.{key}"] == value
        now = {**settings, f"TRAINER.DUALCOOP.{key}": changed(value)}
        assert len(run_differences({"settings": settings}, {"settings": now}, 1, parts=("settings",))) == 1


FINGERPRINT = {
    "settings": dict(DEFAULTS), "knowledge": "a" * 64, "backbone": "tiny|random|gelu",
    "classes": ["dog", "cat", "car", "bus"],
    "groups": {"coarse": [["dog", "cat"], ["car", "bus"]], "fine": [["car", "bus"]]},
}
# the same classes regrouped into the same number of slots: the checkpoint's shapes fit
REGROUPED = {"coarse": [["dog", "car"], ["cat", "bus"]], "fine": [["car", "bus"]]}


@pytest.mark.parametrize("part, value", [
    ("knowledge", "b" * 64), ("backbone", "tiny|random|quickgelu"), ("classes", ["cat", "dog", "car", "bus"]),
    ("groups", REGROUPED), ("groups", {"coarse": [["dog", "cat"], ["car", "bus"]], "fine": []}),
])
def test_a_resume_with_another_knowledge_backbone_class_list_or_grouping_is_refused(part, value):
    differences = run_differences(FINGERPRINT, {**FINGERPRINT, part: value}, 1)
    assert len(differences) == 1 and differences[0].split(":")[0] in (
        "knowledge-folder content (SHA-256 of DATASET.TEXT.DIR's files)", "backbone identity", "classes",
        "prompt groups (groups.json)")


class Host(PromptCheckpointing):
    """A minimal CheckpointHost: one prompt model, no optimiser."""

    def __init__(self, fingerprint, slots=2):
        self.fingerprint = fingerprint
        self._models = {"prompt_learner": nn.Linear(3, slots)}
        self._optims, self._scheds = {}, {}

    def get_model_names(self, names=None):
        return list(self._models)


def test_eval_only_refuses_regrouped_classes_and_accepts_other_training_settings(tmp_path):
    trained = Host(FINGERPRINT)
    save_checkpoint(tmp_path, "prompt_learner", 2, trained._models["prompt_learner"], run=FINGERPRINT)
    weights = trained._models["prompt_learner"].weight.detach().clone()

    regrouped = Host({**FINGERPRINT, "groups": REGROUPED})
    before = regrouped._models["prompt_learner"].weight.detach().clone()
    with pytest.raises(CheckpointError, match=r"trained for other prompts than this run builds: prompt groups"):
        regrouped.load_model(tmp_path)
    assert torch.equal(regrouped._models["prompt_learner"].weight, before)  # nothing loaded

    for part, value in (("classes", ["cat", "dog", "car", "bus"]), ("backbone", "other")):
        with pytest.raises(CheckpointError, match="trained for other prompts"):
            Host({**FINGERPRINT, part: value}).load_model(tmp_path)

    # evaluation may use other training settings (and another knowledge folder's sentences)
    other = Host({**FINGERPRINT, "knowledge": "c" * 64,
                  "settings": {**DEFAULTS, "TRAINER.HIPROMPT.LAMBDA_ORDER": 0.5, "OPTIM.LR": 1.0}})
    other.load_model(tmp_path)
    assert torch.equal(other._models["prompt_learner"].weight, weights)
