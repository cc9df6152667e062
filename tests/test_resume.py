"""No silent wrong result on the run side: a resume with other settings is refused, evaluation
settings may change, and a damaged checkpoint is named (tiny random CLIP, small text world)."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from test_config import error_line
from test_trainer import make_text_world

import train
from hiprompt.training.checkpoint import (
    CheckpointError,
    PromptCheckpointing,
    checkpoint_epoch,
    load_checkpoint,
    read_checkpoint,
    run_differences,
    save_checkpoint,
)


def cli(world, out, *opts, model_dir=None):
    """train.py's arguments for the small text world; with `model_dir`, an --eval-only run."""
    knowledge, images = world
    evaluate = ["--eval-only", "--model-dir", str(model_dir)] if model_dir else []
    return ["--root", str(images), "--seed", "1", "--trainer", "HierarchicalCoOp", *evaluate,
            "--dataset-config-file", "configs/datasets/custom.yaml",
            "--config-file", "configs/trainers/HierarchicalCoOp/tiny.yaml", "--output-dir", str(out),
            "DATASET.CSV", "labels.csv", "DATASET.TEXT.DIR", str(knowledge), "DATASET.TEXT.HOLDOUT", "0.3",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "OPTIM.MAX_EPOCH", "2", *opts]


def files(folder) -> dict:
    """Every file's bytes under `folder`, but the appended log."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "log.txt"}


@pytest.fixture(scope="module")
def text_world(tmp_path_factory):
    return make_text_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def finished_run(text_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    train.main(cli(text_world, out))
    return out


@pytest.fixture
def trained_run(finished_run, tmp_path):
    """A copy of a finished two-epoch run (checkpoints 1 and 2, run_info.json, results_test.json)."""
    return shutil.copytree(finished_run, tmp_path / "run")


def test_resume_with_other_settings_is_refused_and_unchanged(text_world, trained_run, tmp_path, capsys):
    knowledge, _ = text_world
    other = shutil.copytree(knowledge, tmp_path / "other-knowledge")
    with open(other / "corpus.jsonl", "a") as handle:
        handle.write(json.dumps({"text": "a dog and a boat.", "asked": ["dog", "boat"],
                                 "found": ["dog", "boat"], "kind": "relation", "question": "test"}) + "\n")
    before = files(trained_run)

    message = error_line(cli(text_world, trained_run, "DATASET.TEXT.DIR", str(other),
                          "DATASET.TEXT.KIND", "coarse", "OPTIM.LR", "0.01"), capsys)
    assert message.startswith(f"error: cannot resume {trained_run / 'prompt_learner' / 'model.pth.tar-2'} (epoch 2)")
    assert "OPTIM.LR: 0.002 there, 0.01 now" in message
    assert "DATASET.TEXT.KIND: 'all' there, 'coarse' now" in message
    assert "knowledge-folder content" in message
    assert "DATASET.TEXT.DIR:" not in message  # the folder is compared by content, not by path
    assert "pass another --output-dir" in message and str(trained_run / "run_info.json") in message
    assert files(trained_run) == before  # checkpoints, run_info.json, results untouched

    # the same content in another folder is the same knowledge: the resume goes ahead
    same = shutil.copytree(knowledge, tmp_path / "copied-knowledge")
    capsys.readouterr()
    train.main(cli(text_world, trained_run, "DATASET.TEXT.DIR", str(same)))
    assert f"resumed from {trained_run} after epoch 2" in capsys.readouterr().out


def test_resume_with_identical_or_evaluation_only_changes_still_works(trained_run, text_world, capsys):
    results = json.loads((trained_run / "results_test.json").read_text())
    capsys.readouterr()
    train.main(cli(text_world, trained_run))
    log = capsys.readouterr().out
    assert f"resumed from {trained_run} after epoch 2" in log and "epoch [" not in log  # nothing left to train
    again = json.loads((trained_run / "results_test.json").read_text())
    # the same scores; the paths recorded are the copy's
    assert again.pop("checkpoint") == str(trained_run / "prompt_learner" / "model.pth.tar-2")
    assert again.pop("config")["OUTPUT_DIR"] == str(trained_run)
    assert again == {key: value for key, value in results.items() if key not in ("checkpoint", "config")}

    train.main(cli(text_world, trained_run, "DATALOADER.NUM_WORKERS", "1", "TRAIN.PRINT_FREQ", "5",
                   "TRAINER.HIPROMPT.LAMBDA_FUSE", "0.5", "TRAINER.HIPROMPT.TAU_IMAGE", "0.25",
                   "TEST.SPLIT", "test", "INPUT.TEST_RESIZE", "resize_crop"))
    assert f"resumed from {trained_run} after epoch 2" in capsys.readouterr().out


def test_eval_only_with_other_evaluation_settings_still_works(trained_run, text_world, tmp_path):
    train.main(cli(text_world, tmp_path / "eval", "TRAINER.HIPROMPT.LAMBDA_FUSE", "1.0",
                   "TRAINER.HIPROMPT.TAU_IMAGE", "0.25", "INPUT.TEST_RESIZE", "resize_crop",
                   "OPTIM.LR", "0.5",  # a training-only setting does not matter to an evaluation
                   model_dir=trained_run))
    assert json.loads((tmp_path / "eval" / "results_test.json").read_text())["num_images"] == 6


def test_eval_only_with_other_classes_is_error_line(trained_run, text_world, tmp_path, capsys):
    names = sorted({"dog", "cat", "car", "bus", "cup", "knife", "tree", "boat"}, reverse=True)
    (tmp_path / "reversed.txt").write_text("\n".join(names) + "\n")
    message = error_line(cli(text_world, tmp_path / "eval", "DATASET.CLASSNAMES_FILE", str(tmp_path / "reversed.txt"),
                          model_dir=trained_run), capsys)
    assert "was trained for other prompts than this run builds: classes:" in message
    assert not (tmp_path / "eval" / "results_test.json").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "other torch file"])
def test_damaged_checkpoint_is_named_and_the_previous_one_offered(trained_run, text_world, tmp_path, capsys, damage):
    last = trained_run / "prompt_learner" / "model.pth.tar-2"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "text":
        last.write_text("not a checkpoint\n")
    else:
        torch.save({"weights": torch.zeros(3)}, last)
    reason = "a readable file, but not" if damage == "other torch file" else "unreadable as a checkpoint"
    before = files(trained_run)

    for argv in (cli(text_world, trained_run),  # resume
                 cli(text_world, tmp_path / "eval", model_dir=trained_run)):
        message = error_line(argv, capsys)
        assert message.startswith(f"error: {last} is damaged ({reason}")
        assert f"the previous checkpoint is {trained_run / 'prompt_learner' / 'model.pth.tar-1'} (epoch 1)" in message
        assert "--load-epoch 1" in message and "weights_only" not in message
    assert files(trained_run) == before  # the damaged file is left for the user to look at


def test_max_epoch_may_grow_on_resume_unless_the_schedule_depends_on_it():
    run = {"settings": {"OPTIM.MAX_EPOCH": 2, "OPTIM.LR_SCHEDULER": "multi_step"}}
    longer = {"settings": {"OPTIM.MAX_EPOCH": 5, "OPTIM.LR_SCHEDULER": "multi_step"}}
    assert run_differences(run, longer, epoch=2, parts=("settings",)) == []
    shorter = {"settings": {"OPTIM.MAX_EPOCH": 1, "OPTIM.LR_SCHEDULER": "multi_step"}}
    assert run_differences(run, shorter, epoch=2, parts=("settings",)) == ["OPTIM.MAX_EPOCH: 2 there, 1 now"]
    cosine = {"settings": {"OPTIM.MAX_EPOCH": 2, "OPTIM.LR_SCHEDULER": "cosine"}}
    assert run_differences(cosine, {"settings": {**cosine["settings"], "OPTIM.MAX_EPOCH": 5}}, epoch=2,
                           parts=("settings",)) == ["OPTIM.MAX_EPOCH: 2 there, 5 now"]
    assert run_differences(None, longer, epoch=2) == [
        "the checkpoint records no settings (written before runs were fingerprinted)"]


def test_a_setting_added_after_the_checkpoint_differs_only_away_from_its_default():
    saved = {"settings": {"OPTIM.MAX_EPOCH": 2}}  # written before TRAINER.HIPROMPT.CTX_INIT existed
    at_default = {"settings": {"OPTIM.MAX_EPOCH": 2, "TRAINER.HIPROMPT.CTX_INIT": ""}}
    assert run_differences(saved, at_default, epoch=1, parts=("settings",)) == []
    changed = {"settings": {"OPTIM.MAX_EPOCH": 2, "TRAINER.HIPROMPT.CTX_INIT": "a photo of a"}}
    assert run_differences(saved, changed, epoch=1, parts=("settings",)) == [
        "TRAINER.HIPROMPT.CTX_INIT: '(absent)' there, 'a photo of a' now"]
    removed = {"settings": {"OPTIM.MAX_EPOCH": 2, "TRAINER.HIPROMPT.CTX_INIT": ""}}
    assert run_differences(removed, saved, epoch=1, parts=("settings",)) == [
        "TRAINER.HIPROMPT.CTX_INIT: '' there, '(absent)' now"]


# -- the checkpoint module on its own: a host with one or two small models ---------------------
class TwoModelHost(PromptCheckpointing):
    """A CheckpointHost with SGD (momentum, so the optimiser has a state) and a step schedule."""

    def __init__(self, names=("prompt_learner",), fingerprint=None, optimise=True, seed=0):
        torch.manual_seed(seed)
        self.fingerprint = fingerprint if fingerprint is not None else {
            "settings": {"OPTIM.LR": 0.1}, "knowledge": "k", "backbone": "x", "classes": ["a", "b"], "groups": {}}
        self._models = {name: torch.nn.Linear(3, 2) for name in names}
        self._optims = {name: torch.optim.SGD(self._models[name].parameters(), lr=0.1, momentum=0.9)
                        for name in names} if optimise else {}
        self._scheds = {name: torch.optim.lr_scheduler.StepLR(self._optims[name], 1, gamma=0.5)
                        for name in names} if optimise else {}

    def get_model_names(self, names=None):
        return list(self._models)

    def step(self):
        for name, model in self._models.items():
            model(torch.ones(1, 3)).square().sum().backward()
            self._optims[name].step()
            self._scheds[name].step()


def test_checkpoint_epoch_reads_the_file_name():
    assert checkpoint_epoch("out/prompt_learner/model.pth.tar-12") == 12
    assert checkpoint_epoch(Path("model.pth.tar-3")) == 3
    assert checkpoint_epoch("out/prompt_learner/model.pth.tar-x") is None and checkpoint_epoch("results.json") is None
    assert checkpoint_epoch(None) is None and checkpoint_epoch("") is None


def test_save_model_writes_weights_optimiser_schedule_and_run_per_model(tmp_path, caplog):
    host = TwoModelHost()
    host.step()
    with caplog.at_level(logging.INFO, logger="hiprompt.training.checkpoint"):
        host.save_model(2, tmp_path)  # epoch 2 counted from 0: the file of epoch 3
    path = tmp_path / "prompt_learner" / "model.pth.tar-3"
    assert host.prompts_from == str(path)
    assert f"saved {path}" in [record.getMessage() for record in caplog.records]
    state = read_checkpoint(path)
    assert state["epoch"] == 3 and state["run"] == host.fingerprint
    momentum = state["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, host._optims["prompt_learner"].state_dict()["state"][0]["momentum_buffer"])
    assert momentum.abs().max() > 0
    assert state["scheduler"]["last_epoch"] == 1 and state["scheduler"]["_last_lr"] == [pytest.approx(0.05)]
    for key, value in host._models["prompt_learner"].state_dict().items():
        assert torch.equal(state["state_dict"][key], value)


def test_save_model_refuses_weights_that_are_not_finite(tmp_path):
    host = TwoModelHost()
    with torch.no_grad():
        host._models["prompt_learner"].weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError) as error:
        host.save_model(2, tmp_path)
    assert str(error.value) == ("the prompt_learner weights are not finite after epoch 3 (training diverged), so "
                                "no checkpoint of it was saved; lower OPTIM.LR and train again")
    assert not (tmp_path / "prompt_learner").exists()


def test_load_model_reads_the_asked_epoch_and_says_so(tmp_path, caplog):
    trained = TwoModelHost()
    trained.save_model(0, tmp_path)
    first = {k: v.clone() for k, v in trained._models["prompt_learner"].state_dict().items()}
    trained.step()
    trained.save_model(1, tmp_path)
    host = TwoModelHost(seed=1)
    with caplog.at_level(logging.INFO, logger="hiprompt.training.checkpoint"):
        host.load_model(tmp_path, epoch=1)
    for key, value in host._models["prompt_learner"].state_dict().items():
        assert torch.equal(value, first[key])
    assert host.prompts_from == str(tmp_path / "prompt_learner" / "model.pth.tar-1")
    assert f"loaded prompt_learner (epoch 1) from {tmp_path}" in [r.getMessage() for r in caplog.records]


def test_load_model_without_a_folder_or_a_recorded_run_warns(tmp_path, caplog):
    host = TwoModelHost()
    before = host._models["prompt_learner"].weight.detach().clone()
    with caplog.at_level(logging.WARNING, logger="hiprompt.training.checkpoint"):
        host.load_model("")
    assert [r.getMessage() for r in caplog.records] == ["no model directory given: evaluating the initial prompts"]
    assert torch.equal(host._models["prompt_learner"].weight, before) and host.prompts_from is None
    save_checkpoint(tmp_path, "prompt_learner", 1, TwoModelHost(seed=1)._models["prompt_learner"])  # run None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hiprompt.training.checkpoint"):
        host.load_model(tmp_path)
    path = tmp_path / "prompt_learner" / "model.pth.tar-1"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{path} records no settings (an older checkpoint): its backbone, classes and groups cannot be checked "
        "against this run's"]


def test_load_model_names_every_difference_and_a_shape_that_does_not_fit(tmp_path):
    TwoModelHost().save_model(0, tmp_path)
    path = tmp_path / "prompt_learner" / "model.pth.tar-1"
    other = TwoModelHost(fingerprint={"settings": {"OPTIM.LR": 0.5}, "knowledge": "other", "backbone": "y",
                                      "classes": ["b", "a"], "groups": {}})  # settings and knowledge may differ
    with pytest.raises(CheckpointError) as error:
        other.load_model(tmp_path)
    assert str(error.value) == (
        f"{path} was trained for other prompts than this run builds: backbone identity: 'x' there, 'y' now; "
        "classes: ['a', 'b'] there, ['b', 'a'] now; evaluate it with the training run's backbone, knowledge "
        "folder and class set")
    wider = TwoModelHost()
    wider._models["prompt_learner"] = torch.nn.Linear(3, 5)
    with pytest.raises(ValueError) as error:
        wider.load_model(tmp_path)
    assert str(error.value).startswith(
        f"the checkpoint in {tmp_path} does not fit these prompts: build them as the training run did (same "
        "DATASET.TEXT.DIR for the groups, same TRAINER.HIPROMPT.N_CTX_* and LOCAL_BRANCH) (Error(s) in loading")


def test_resume_restores_weights_optimiser_schedule_and_rng_of_the_last_common_epoch(tmp_path, caplog):
    names = ("prompt_learner", "other")
    trained = TwoModelHost(names)
    trained.step()
    trained.save_model(0, tmp_path)  # epoch 1 of both models
    expected = {name: ({k: v.clone() for k, v in trained._models[name].state_dict().items()},
                       trained._optims[name].state_dict()["state"][0]["momentum_buffer"].clone(),
                       trained._scheds[name].state_dict()["last_epoch"]) for name in names}
    rng = torch.get_rng_state()
    trained.step()
    save_checkpoint(tmp_path, "prompt_learner", 2, trained._models["prompt_learner"], run=trained.fingerprint)
    host = TwoModelHost(names, seed=1)
    torch.manual_seed(123)
    with caplog.at_level(logging.INFO, logger="hiprompt.training.checkpoint"):
        assert host.resume_model_if_exist(tmp_path) == 1  # "other" has epoch 1 only
    assert torch.equal(torch.get_rng_state(), rng)
    for name in names:
        weights, momentum, last_epoch = expected[name]
        for key, value in host._models[name].state_dict().items():
            assert torch.equal(value, weights[key])
        assert torch.equal(host._optims[name].state_dict()["state"][0]["momentum_buffer"], momentum)
        assert host._scheds[name].state_dict()["last_epoch"] == last_epoch == 1
    assert f"resumed from {tmp_path} after epoch 1" in [r.getMessage() for r in caplog.records]


def test_resume_skips_the_optimiser_and_schedule_it_has_not_or_the_checkpoint_has_not(tmp_path):
    trained = TwoModelHost()
    trained.step()
    trained.save_model(0, tmp_path)
    bare = TwoModelHost(optimise=False, seed=1)  # no optimiser, no schedule: the weights only
    assert bare.resume_model_if_exist(tmp_path) == 1
    assert torch.equal(bare._models["prompt_learner"].weight, trained._models["prompt_learner"].weight)
    save_checkpoint(tmp_path / "plain", "prompt_learner", 1, trained._models["prompt_learner"], run=trained.fingerprint)
    host = TwoModelHost(seed=1)  # the checkpoint has neither: the fresh ones are kept
    assert host.resume_model_if_exist(tmp_path / "plain") == 1
    assert host._optims["prompt_learner"].state_dict()["state"] == {}
    assert host._scheds["prompt_learner"].state_dict()["last_epoch"] == 0


def test_a_refused_resume_names_every_difference(tmp_path):
    TwoModelHost(fingerprint={"settings": {"OPTIM.LR": 0.1, "SEED": 1}}).save_model(0, tmp_path)
    host = TwoModelHost(fingerprint={"settings": {"OPTIM.LR": 0.2, "SEED": 2}})
    with pytest.raises(CheckpointError) as error:
        host.resume_model_if_exist(tmp_path)
    assert str(error.value) == (
        f"cannot resume {tmp_path / 'prompt_learner' / 'model.pth.tar-1'} (epoch 1): it was trained with other "
        "settings: OPTIM.LR: 0.1 there, 0.2 now; SEED: 1 there, 2 now. To start fresh, pass another --output-dir "
        f"(or delete {tmp_path / 'prompt_learner'}); to continue it, run with the settings in "
        f"{tmp_path / 'run_info.json'}")


def test_long_values_are_shortened_in_differences():
    """A digest over 40 characters shows its first 12; a list over 6 items its first 6 and the count."""
    digest, short = "0123456789abcdef" * 4, "x" * 40
    classes = ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]
    saved = {"knowledge": digest, "backbone": short, "classes": classes, "groups": None}
    now = {"knowledge": digest[::-1], "backbone": short + "y", "classes": classes[:6], "groups": {"fine": []}}
    assert run_differences(saved, now, 1, parts=("knowledge", "backbone", "classes", "groups")) == [
        "knowledge-folder content (SHA-256 of DATASET.TEXT.DIR's files): '0123456789ab...' there, "
        "'fedcba987654...' now",
        f"backbone identity: {short!r} there, '{'x' * 12}...' now",
        "classes: ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', ... (7 in all)] there, "
        "['c1', 'c2', 'c3', 'c4', 'c5', 'c6'] now",
        "prompt groups (groups.json): None there, {'fine': []} now",
    ]


def test_max_epoch_may_shrink_to_the_epoch_already_done():
    saved = {"settings": {"OPTIM.MAX_EPOCH": 5, "OPTIM.LR_SCHEDULER": "multi_step"}}
    now = {"settings": {"OPTIM.MAX_EPOCH": 2, "OPTIM.LR_SCHEDULER": "multi_step"}}
    assert run_differences(saved, now, epoch=2, parts=("settings",)) == []


def test_missing_and_damaged_checkpoints_without_an_earlier_one_are_named(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_checkpoint(tmp_path, "prompt_learner")
    assert str(error.value) == (f"no checkpoint of 'prompt_learner' under {tmp_path}: expected "
                                f"{tmp_path / 'prompt_learner' / 'model.pth.tar-<epoch>'}")
    with pytest.raises(FileNotFoundError) as error:
        read_checkpoint(tmp_path / "absent")
    assert str(error.value) == f"checkpoint not found: {tmp_path / 'absent'}"
    path = tmp_path / "prompt_learner" / "model.pth.tar-1"
    path.parent.mkdir()
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path, "prompt_learner")
    assert str(error.value) == (f"{path} is damaged (unreadable as a checkpoint: EOFError); there is no earlier "
                                "checkpoint: delete it and train again")


class NotAllowed:
    """A class `weights_only` loading refuses (arbitrary code could stand behind a pickle)."""


def test_checkpoints_are_read_as_weights_only(tmp_path):
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": {}, "epoch": 1, "extra": NotAllowed()}, path)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == "unreadable as a checkpoint: UnpicklingError"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, path)  # the two keys needed, nothing else
    assert read_checkpoint(path)["epoch"] == 1


def test_a_checkpoint_written_on_a_gpu_reads_on_the_cpu(tmp_path, monkeypatch):
    """Tensors saved from CUDA (an optimiser's state stays on the device) load onto the CPU
    on a machine without one: the file records their device as "cuda:0" here."""
    path = tmp_path / "model.pth.tar-1"
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save({"state_dict": {"w": torch.arange(3.0)}, "epoch": 1}, path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)  # the file does ask for CUDA
    state = read_checkpoint(path)
    assert state["state_dict"]["w"].device.type == "cpu" and state["state_dict"]["w"].tolist() == [0.0, 1.0, 2.0]
