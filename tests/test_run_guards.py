"""No silent wrong result on the command line (issue 25, round two): a run folder in use by
another run, an --output-dir that is a file, a hold-out that leaves nothing to train, Ctrl-C,
a diverging training, and results that record what they were computed with (tiny random
CLIP, small text world)."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from test_config import error_line
from test_resume import cli
from test_trainer import make_cfg, make_text_world, small_corpus

import train
from hiprompt.training.checkpoint import CheckpointError, latest_epoch
from hiprompt.training.prompt_training import PromptTraining
from hiprompt.training.runtime import build_trainer

CHECKPOINTS = "prompt_learner"


def every_file(folder) -> dict:
    """Every file's bytes under `folder`, the log and the lock file included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def errors_of(stdout: str) -> list:
    return [line.split(" ", 2)[2] for line in stdout.splitlines() if " error: " in line]


def environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def text_world(tmp_path_factory):
    return make_text_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def finished_run(text_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    train.main(cli(text_world, out))  # two epochs, checkpoints 1 and 2, then the evaluation
    return out


@pytest.fixture
def trained_run(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "run")


HOLD = """import sys
from hiprompt.fileio import FolderLock
with FolderLock(sys.argv[1], "training"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_into_a_folder_in_use_stops_and_changes_nothing(text_world, trained_run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(trained_run)], cwd=REPO, env=environment(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        before = every_file(trained_run)
        busy = f"error: {trained_run} is in use by pid {holder.pid} (training: -c {trained_run}); wait for it to finish"

        second = subprocess.run([sys.executable, "train.py", *cli(text_world, trained_run)], cwd=REPO,
                                env=environment(), capture_output=True, text=True, timeout=600, check=False)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "Traceback" not in second.stdout + second.stderr
        assert errors_of(second.stdout) == [f"{busy}, or write this training elsewhere"]
        assert every_file(trained_run) == before  # not even a line in log.txt

        evaluation = cli(text_world, trained_run, "TRAINER.HIPROMPT.LAMBDA_FUSE", "0.9", model_dir=trained_run)
        assert error_line(evaluation, capsys) == f"{busy}, or write this evaluation elsewhere"
        assert every_file(trained_run) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # the lock goes with its holder; the lock file left behind is no obstacle to the next run
    capsys.readouterr()
    train.main(cli(text_world, trained_run))
    assert f"resumed from {trained_run} after epoch 2" in capsys.readouterr().out
    assert (trained_run / ".lock").is_file()


def test_output_dir_that_is_a_file_is_one_line(text_world, tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("my notes\n")
    assert error_line(cli(text_world, existing), capsys) == (
        f"error: --output-dir {existing} is an existing file, not a folder: pass a folder path")
    inside = existing / "run"
    assert error_line(cli(text_world, inside), capsys) == (
        f"error: --output-dir {inside}: cannot make the run folder (Not a directory: {inside}); pass another folder")
    assert existing.read_text() == "my notes\n"


def test_results_record_the_settings_and_checkpoint_they_were_computed_with(text_world, finished_run, trained_run):
    trained = json.loads((finished_run / "results_test.json").read_text())
    assert trained["config"]["TRAINER"]["HIPROMPT"]["LAMBDA_FUSE"] == 0.65
    assert trained["checkpoint"] == str(finished_run / CHECKPOINTS / "model.pth.tar-2")

    train.main(cli(text_world, trained_run, "TRAINER.HIPROMPT.LAMBDA_FUSE", "0.9", model_dir=trained_run))
    evaluated = json.loads((trained_run / "results_test.json").read_text())
    assert evaluated["config"]["TRAINER"]["HIPROMPT"]["LAMBDA_FUSE"] == 0.9
    assert evaluated["config"]["OUTPUT_DIR"] == str(trained_run)
    assert evaluated["checkpoint"] == str(trained_run / CHECKPOINTS / "model.pth.tar-2")
    run_info = json.loads((trained_run / "run_info.json").read_text())
    assert run_info["config"]["TRAINER"]["HIPROMPT"]["LAMBDA_FUSE"] == 0.65  # the training run's, unchanged

    train.main(["--load-epoch", "1", *cli(text_world, trained_run, model_dir=trained_run)])
    first = json.loads((trained_run / "results_test.json").read_text())
    assert first["checkpoint"] == str(trained_run / CHECKPOINTS / "model.pth.tar-1")
    assert first["config"]["TRAINER"]["HIPROMPT"]["LAMBDA_FUSE"] == 0.65


def test_holdout_that_leaves_no_training_sentence_is_one_line(text_world, tmp_path, capsys):
    knowledge, _ = text_world
    out = tmp_path / "run"
    message = error_line(cli(text_world, out, "DATASET.TEXT.HOLDOUT", "0.999"), capsys)
    assert message == (f"error: DATASET.TEXT.HOLDOUT 0.999: no training sentence is left after holding out 99.9% "
                       f"of {len(small_corpus())} sentences ({knowledge}); lower DATASET.TEXT.HOLDOUT")
    assert not list(out.rglob("model.pth.tar-*"))


def test_ctrl_c_says_where_the_run_stopped_and_the_same_command_resumes(text_world, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    original = PromptTraining.forward_backward

    def interrupted_in_epoch_two(self, batch):
        if self.epoch == 1 and self.batch_idx == 2:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(PromptTraining, "forward_backward", interrupted_in_epoch_two)
    capsys.readouterr()
    try:
        train.main(cli(text_world, out))
    except KeyboardInterrupt:  # (uncaught, it would end the whole pytest session)
        pytest.fail("Ctrl-C came out of train.main as a KeyboardInterrupt")
    except SystemExit as stop:
        assert stop.code == 130
    else:
        pytest.fail("train.main went on after Ctrl-C")
    last = out / CHECKPOINTS / "model.pth.tar-1"
    lines = [line.split(" ", 2)[2] for line in capsys.readouterr().out.splitlines() if " interrupted: " in line]
    assert lines == [(f"interrupted: the last checkpoint is {last} (epoch 1 of 2); run the same command again "
                      "to resume after it")]
    assert sorted(p.name for p in (out / CHECKPOINTS).iterdir()) == ["model.pth.tar-1"]
    assert not (out / "results_test.json").exists()

    monkeypatch.setattr(PromptTraining, "forward_backward", original)
    train.main(cli(text_world, out))
    assert f"resumed from {out} after epoch 1" in capsys.readouterr().out
    assert (out / "results_test.json").is_file()


def test_a_real_ctrl_c_exits_130_with_one_line_and_no_traceback(text_world, tmp_path):
    out = tmp_path / "run"
    run = subprocess.Popen([sys.executable, "train.py", *cli(text_world, out, "OPTIM.MAX_EPOCH", "200")],
                           cwd=REPO, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in run.stdout:
            if " saved " in line:  # a checkpoint is written: training is under way
                break
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 130
    assert "Traceback" not in stdout + stderr
    epoch = latest_epoch(out, CHECKPOINTS)
    assert stdout.splitlines()[-1].split(" ", 2)[2] == (
        f"interrupted: the last checkpoint is {out / CHECKPOINTS / f'model.pth.tar-{epoch}'} (epoch {epoch} of 200); "
        "run the same command again to resume after it")


def test_a_diverging_training_stops_at_the_first_non_finite_loss_and_saves_nothing(text_world, tmp_path, capsys):
    out = tmp_path / "run"
    message = error_line(cli(text_world, out, "OPTIM.LR", "1e9"), capsys)
    assert message.startswith("error: the training loss is not finite in epoch 1/2, batch ")
    assert "loss nan" in message and "rank_global " in message and "order " in message
    assert message.endswith("training diverged; lower OPTIM.LR (now 1e+09); nothing of this epoch was saved")
    assert not (out / CHECKPOINTS).exists() and not (out / "results_test.json").exists()


def test_prompts_that_are_not_finite_are_never_saved(text_world, tmp_path):
    out = tmp_path / "run"
    trainer = build_trainer(make_cfg("HierarchicalCoOp", text_world, out))
    with torch.no_grad():
        next(iter(trainer.model.prompts.parameters()))[0].fill_(float("inf"))
    with pytest.raises(CheckpointError, match="the prompt_learner weights are not finite after epoch 3 "
                                              r"\(training diverged\), so no checkpoint of it was saved"):
        trainer.save_model(2, str(out))
    assert not (out / CHECKPOINTS).exists()
