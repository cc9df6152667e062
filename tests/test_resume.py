"""No silent wrong result on the run side: a resume with other settings is refused, evaluation
settings may change, and a damaged checkpoint is named (tiny random CLIP, small text world)."""

import json
import shutil

import pytest
import torch
from test_config import error_line
from test_trainer import make_text_world

import train
from hiprompt.training.checkpoint import run_differences


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
