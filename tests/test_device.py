"""Device-agnostic code, checked on a machine without a GPU: every trainer, the tagger, the
benchmark's step and the toy CLIP's pretraining run on an emulated CUDA device
(tests/emulated_cuda.py), where a tensor left on the CPU that meets one on the device
raises as it does on CUDA; their results equal the CPU run's (the arithmetic is the same)."""

import json

import pytest
import torch

import train
from conftest import coco_mini_root
from emulated_cuda import EmulatedDeviceMismatch, EmulatedTensor, emulated_cuda
from test_trainer import make_text_world

TEXT_TRAINERS = ["HierarchicalCoOp", "CoOp", "TaIDPT"]


def test_the_emulator_raises_where_cuda_raises_and_runs_autograd():
    """The guard itself: a CPU index into an embedding on the device raises (the bug of
    issue 21); moved to the device, forward, backward and an SGD step run, with the CPU's values."""
    torch.manual_seed(0)
    cpu = torch.nn.Embedding(10, 4)
    expected = cpu(torch.tensor([[1, 2]])).sum()
    expected.backward()
    with emulated_cuda():
        assert torch.cuda.is_available()
        embedding = torch.nn.Embedding(10, 4)
        embedding.load_state_dict(cpu.state_dict())
        embedding.to("cuda")
        assert isinstance(embedding.weight, EmulatedTensor)
        with pytest.raises(EmulatedDeviceMismatch, match="aten.embedding"):
            embedding(torch.tensor([[1, 2]]))
        loss = embedding(torch.tensor([[1, 2]], device="cuda")).sum()
        loss.backward()
        assert loss.item() == pytest.approx(expected.item(), abs=0)
        torch.optim.SGD(embedding.parameters(), lr=1.0).step()
        torch.testing.assert_close(embedding.weight.cpu(), cpu.weight.detach() - cpu.weight.grad, rtol=0, atol=0)
        torch.zeros(3, device="cuda") + torch.tensor(2.0)  # a 0-dim CPU tensor is a scalar, as on CUDA
        with pytest.raises(EmulatedDeviceMismatch):
            torch.zeros(3, device="cuda") + torch.ones(3)


def run_both(tmp_path, argv_of):
    """results_test.json of the same run on the CPU and on the emulated CUDA device."""
    runs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        argv = argv_of(out) + (["USE_CUDA", "False"] if device == "cpu" else [])
        if device == "cuda":
            with emulated_cuda() as emulated:
                train.main(argv)
            assert emulated.on_device > 100  # the run computed on the device
        else:
            train.main(argv)
        runs[device] = json.loads((out / "results_test.json").read_text())
    return runs["cpu"], runs["cuda"]


def assert_same_metrics(cpu, cuda):
    assert cpu["metrics"].keys() == cuda["metrics"].keys()
    for name, value in cpu["metrics"].items():
        assert cuda["metrics"][name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.parametrize("trainer", TEXT_TRAINERS + ["ZeroshotCLIP", "DualCoOp"])
def test_trainers_run_on_the_device_with_the_cpu_results(tmp_path, trainer):
    knowledge, images = make_text_world(tmp_path)

    def argv_of(out):
        argv = ["--root", str(images), "--seed", "1", "--trainer", trainer,
                "--dataset-config-file", "configs/datasets/custom.yaml",
                "--config-file", f"configs/trainers/{trainer}/tiny.yaml", "--output-dir", str(out)]
        argv += ["--eval-only"] if trainer == "ZeroshotCLIP" else []
        argv += ["DATASET.CSV", "labels.csv", "DATASET.TEXT.DIR", str(knowledge), "DATALOADER.TRAIN_X.BATCH_SIZE", "16"]
        if trainer == "ZeroshotCLIP":
            return argv
        if trainer == "DualCoOp":
            argv += ["TRAINER.DUALCOOP.TRAIN_DATA", "text"]
        return argv + ["OPTIM.MAX_EPOCH", "2"]

    cpu, cuda = run_both(tmp_path, argv_of)
    assert_same_metrics(cpu, cuda)


def test_dualcoop_on_images_runs_on_the_device_with_the_cpu_results(tmp_path):
    root = coco_mini_root()
    cpu, cuda = run_both(tmp_path, lambda out: [
        "--root", str(root), "--dataset-config-file", "configs/datasets/coco2017.yaml", "--trainer", "DualCoOp",
        "--config-file", "configs/trainers/DualCoOp/tiny.yaml", "--seed", "1", "--output-dir", str(out),
        "OPTIM.MAX_EPOCH", "1"])
    assert_same_metrics(cpu, cuda)


def test_bf16_setting_runs_on_the_device(tmp_path):
    """PREC bf16 turns on CUDA autocast: the path runs (the emulator keeps float32 arithmetic)."""
    knowledge, images = make_text_world(tmp_path)
    with emulated_cuda():
        train.main(["--root", str(images), "--seed", "1", "--trainer", "HierarchicalCoOp",
                    "--dataset-config-file", "configs/datasets/custom.yaml",
                    "--config-file", "configs/trainers/HierarchicalCoOp/tiny.yaml", "--output-dir", str(tmp_path / "o"),
                    "DATASET.CSV", "labels.csv", "DATASET.TEXT.DIR", str(knowledge), "OPTIM.MAX_EPOCH", "1",
                    "TRAINER.HIPROMPT.PREC", "bf16"])
    assert json.loads((tmp_path / "o" / "results_test.json").read_text())["metrics"]["mAP"] > 0


def test_tagger_runs_on_the_device_with_the_cpu_scores(tmp_path):
    from hiprompt.cli import main
    from hiprompt.toyworld.generate import write_dataset

    write_dataset(tmp_path / "photos", n_images=24, seed=2)
    scores = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.csv"
        command = ["tag", "--labels", str(tmp_path / "photos" / "classnames.txt"), "--images",
                   str(tmp_path / "photos" / "images"), "--out", str(out), "--backend", "toy-oracle", "--profile",
                   "small", "--backbone", "toy", "--weights", "packaged", "--set", "OPTIM.MAX_EPOCH", "1",
                   "--workers", "0", "--no-progress", "--device", device]
        if device == "cuda":
            with emulated_cuda() as emulated:
                assert main(command) == 0
            assert emulated.on_device > 100
        else:
            assert main(command) == 0
        rows = out.read_text().splitlines()
        scores[device] = {row.split(",")[0]: [float(v) for v in row.split(",")[3:]] for row in rows[1:]}
    assert scores["cpu"].keys() == scores["cuda"].keys() and len(scores["cpu"]) == 24
    for path, row in scores["cpu"].items():
        assert scores["cuda"][path] == pytest.approx(row, abs=1e-5)


def test_toy_clip_pretraining_runs_on_the_device_with_the_cpu_losses():
    from hiprompt.toyworld.pretrain import pretrain

    settings = dict(seed=0, steps=2, batch_size=8, lr=1e-3, weight_decay=0.1, log_every=0)
    _, cpu_losses, _ = pretrain(**settings)
    with emulated_cuda():
        model, cuda_losses, _ = pretrain(**settings, device="cuda")
    assert not any(isinstance(p, EmulatedTensor) for p in model.parameters())  # handed back on the CPU
    assert cuda_losses == pytest.approx(cpu_losses, abs=1e-5)


def test_step_benchmark_sides_run_on_the_device(tmp_path):
    import argparse
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("bench_step", REPO / "scripts" / "bench_step.py")
    bench_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_step)
    figures = {}
    for side in ("reference", "store", "fly"):
        args = argparse.Namespace(side=side, device="cuda", prec="bf16", steps=2, batch=4, backbone="tiny",
                                  kernels=False, cache=str(tmp_path / side))
        with emulated_cuda():
            figures[side] = bench_step.run_side(args)
    for side in ("store", "fly"):
        # the store keeps token features in float16: the losses agree to 1e-3 of their size
        assert figures[side]["losses"] == pytest.approx(figures["reference"]["losses"], rel=1e-3)
