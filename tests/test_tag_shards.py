"""The tagger at scale (`hiprompt tag --out-dir`, hiprompt/apps/shards.py): a plan made once and
byte-stable, one owner per shard, one part per shard written whole, resume after a killed rank,
one process and `torchrun` giving the same rows, refused and accepted reruns, tar shards with a
corrupt member and a member of an unknown kind, the Slurm variables. CPU only: the tiny
random-weight backbone, a few dozen images, shards of 6, no reading workers."""

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hiprompt.apps import shards, tag
from hiprompt.apps.cli import main
from hiprompt.config import apply_settings, get_cfg_default, result_settings
from hiprompt.model.method import PromptedCLIP
from hiprompt.training.checkpoint import PROMPTS_MODEL, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
LABELS = ["cat", "dog", "cow"]
SHARD_SIZE = 6
WORLD_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
                   "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                   "TORCHELASTIC_RESTART_COUNT")
# a rank that dies (os._exit) on its Nth batch; under torchrun only on its first attempt
DYING_RANK = """
import os, sys
from hiprompt.apps import tag
from hiprompt.apps.cli import main

real, calls = tag.Tagger.fused_scores, [0]

def dying(self, images):
    calls[0] += 1
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    rank = os.environ.get("RANK", "0")
    if calls[0] == int(os.environ["DIE_AT"]) and rank == os.environ["DIE_RANK"] and first_attempt:
        os._exit(17)
    return real(self, images)

tag.Tagger.fused_scores = dying
sys.exit(main(sys.argv[1:]))
"""


def _noise(seed, size=(40, 30), mode="RGB"):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3 if mode == "RGB" else 4)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


@pytest.fixture(autouse=True)
def _one_process(monkeypatch):
    for name in WORLD_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The in-process runs on one thread, as the subprocesses (OMP_NUM_THREADS=1): another
    thread count sums in another order, and the parts are compared byte for byte."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Prompts for the tiny backbone, 40 images (a corrupt one, a PNG with alpha, a grey-scale
    JPEG), and the one-process run: its folder and merged CSV."""
    root = tmp_path_factory.mktemp("shards")
    from hiprompt.training.build import build_backbone

    clip = build_backbone(tag.tag_config("tiny", "random"))
    settings = result_settings(get_cfg_default())
    groups = {"coarse": [], "fine": []}
    model = PromptedCLIP(clip, LABELS, groups, apply_settings(get_cfg_default(), settings).TRAINER.HIPROMPT)
    run = {"settings": settings, "backbone": clip.identity(), "classes": LABELS, "groups": groups}
    prompts = save_checkpoint(root / "prompts", PROMPTS_MODEL, 1, model.prompts, run=run)
    images = root / "images"
    for i in range(37):
        (images / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        _noise(i).save(images / f"d{i % 3}" / f"{i:03d}.jpg")
    _noise(100, mode="RGBA").save(images / "alpha.png")
    _noise(101, mode="L").save(images / "grey.jpg")
    (images / "d1" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    ref = root / "ref"
    assert main(_command(prompts, images, ref)) == 0
    assert main(["tag", "--merge", str(ref), str(root / "ref.csv")]) == 0
    return {"root": root, "prompts": prompts, "images": images, "ref": ref, "merged": root / "ref.csv"}


def _command(prompts, images, out, *extra):
    source = ["--images", str(images)] if images is not None else []
    return ["tag", "--prompts", str(prompts), *source, "--out-dir", str(out), "--shard-size", str(SHARD_SIZE),
            "--backbone", "tiny", "--weights", "random", "--workers", "0", "--batch-size", "4", "--no-progress",
            *extra]


def _env(**more):
    env = {k: v for k, v in os.environ.items() if k not in WORLD_VARIABLES}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), **more)
    return env


def _torchrun(*args, timeout=120, **env):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", *args],
                          capture_output=True, text=True, cwd=REPO, env=_env(**env), timeout=timeout)


def _merged(out, name="merged.csv"):
    destination = Path(out).parent / f"{Path(out).name}-{name}"
    assert main(["tag", "--merge", str(out), str(destination)]) == 0
    return destination.read_bytes()


def _parts(out):
    return {p.name: p.read_bytes() for p in sorted((Path(out) / "parts").iterdir())}


# -- the plan and its owners ---------------------------------------------------------------------
def test_plan_is_byte_stable_and_each_shard_has_one_owner(world, tmp_path, capsys):
    ref, plan_bytes = world["ref"], (world["ref"] / "manifest.json").read_bytes()
    plan = json.loads(plan_bytes)
    assert len(plan["shards"]) == 7 and plan["input"]["images"]["count"] == 40
    assert str(world["root"]) not in plan_bytes.decode()  # no absolute paths
    assert main(_command(world["prompts"], world["images"], tmp_path / "a", "--plan-only")) == 0
    assert (tmp_path / "a" / "manifest.json").read_bytes() == plan_bytes
    assert not list((tmp_path / "a" / "parts").iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in (ref / "parts").iterdir()}
    assert main(_command(world["prompts"], world["images"], ref)) == 0  # a rerun: every shard is done
    assert (ref / "manifest.json").read_bytes() == plan_bytes
    assert {p.name: p.stat().st_mtime_ns for p in (ref / "parts").iterdir()} == before
    assert "0 parts written now" in capsys.readouterr().out
    for world_size in range(1, 6):
        owned = [s["index"] for rank in range(world_size) for s in shards.my_shards(plan, rank, world_size)]
        assert sorted(owned) == list(range(7))  # every shard once
    assert main(["tag", "--status", str(ref)]) == 0
    assert capsys.readouterr().out.strip() == f"{ref}: 7/7 shards done, 40/40 images; complete (report.json, _SUCCESS)"


def test_parts_report_and_merge_match_the_single_file_output(world, tmp_path):
    report = json.loads((world["ref"] / "report.json").read_text())
    assert (report["images"], report["scored"], report["unreadable_count"]) == (40, 39, 1)
    assert report["unreadable"][0]["id"] == "d1/corrupt.jpg"
    assert report["unreadable"][0]["error"].startswith(("OSError", "UnidentifiedImageError"))
    assert (world["ref"] / "_SUCCESS").is_file()
    # today's one-file output of the same folder: the same rows (batches differ: values to 1e-5)
    single = tmp_path / "single.csv"
    assert main(["tag", "--prompts", str(world["prompts"]), "--images", str(world["images"]), "--out", str(single),
                 "--backbone", "tiny", "--weights", "random", "--workers", "0", "--no-progress"]) == 0
    merged, one = _read_csv(world["merged"]), _read_csv(single)
    assert merged[0] == one[0] == ["path", "labels", "top_k", *LABELS]
    assert [r[0] for r in merged[1:]] == [r[0] for r in one[1:]] and len(merged) == 40
    np.testing.assert_allclose(np.array([r[3:] for r in merged[1:]], float),
                               np.array([r[3:] for r in one[1:]], float), rtol=1e-5, atol=1e-7)


# -- processes ---------------------------------------------------------------------------------
def test_torchrun_two_processes_write_what_one_process_writes(world, tmp_path):
    out = tmp_path / "two"
    command = _command(world["prompts"], world["images"], out)
    done = _torchrun("--nproc-per-node", "2", "-m", "hiprompt.apps.cli", *command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 of 2" in done.stdout and "rank 1 of 2" in done.stdout
    assert _parts(out) == _parts(world["ref"])  # byte for byte
    assert _merged(out) == world["merged"].read_bytes()
    assert (out / "report.json").read_bytes() == (world["ref"] / "report.json").read_bytes()


def test_a_killed_rank_leaves_its_part_absent_and_a_rerun_completes(world, tmp_path):
    script, out = tmp_path / "dying.py", tmp_path / "killed"
    script.write_text(DYING_RANK)
    # batches of 4 in shards of 6: the 4th batch is the second of shard 1
    done = subprocess.run([sys.executable, str(script), *_command(world["prompts"], world["images"], out)],
                          capture_output=True, text=True, cwd=REPO, env=_env(DIE_AT="4", DIE_RANK="0"), timeout=120)
    assert done.returncode == 17, done.stderr[-2000:]
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["part-000000.csv"]  # no temporary file either
    assert (out / "parts" / "part-000000.csv").read_bytes() == (world["ref"] / "parts" / "part-000000.csv").read_bytes()
    assert not (out / "_SUCCESS").exists()
    assert shards.progress(out)["shards_done"] == 1
    assert main(_command(world["prompts"], world["images"], out)) == 0
    assert _parts(out) == _parts(world["ref"]) and _merged(out) == world["merged"].read_bytes()


def test_torchrun_with_max_restarts_recovers_a_killed_rank(world, tmp_path):
    script, out = tmp_path / "dying.py", tmp_path / "restarted"
    script.write_text(DYING_RANK)
    done = _torchrun("--nproc-per-node", "2", "--max-restarts", "1", str(script),
                     *_command(world["prompts"], world["images"], out), DIE_AT="2", DIE_RANK="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "failed (exitcode: 17)" in done.stderr  # the first attempt's death, then the restart
    assert _merged(out) == world["merged"].read_bytes() and (out / "_SUCCESS").is_file()


# -- reruns ------------------------------------------------------------------------------------
def test_reruns_refuse_another_identity_and_accept_another_world(world, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(world["ref"], out)
    capsys.readouterr()
    assert main(_command(world["prompts"], world["images"], out, "--threshold", "0.2")) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert "planned for another run (thresholds: [0.1, 0.1, 0.1] in the plan, [0.2, 0.2, 0.2] now)" in error
    assert main(_command(world["prompts"], world["images"], out, "--format", "jsonl")) == 2
    assert '(format: "csv" in the plan, "jsonl" now)' in capsys.readouterr().err
    # another world size: remove three parts and the end marks; ranks 0..2 of 3 finish them
    for index in (1, 2, 5):
        (out / "parts" / f"part-{index:06d}.csv").unlink()
    (out / "_SUCCESS").unlink()
    (out / "report.json").unlink()
    for rank in range(3):
        assert main(_command(world["prompts"], world["images"], out, "--rank", str(rank), "--world-size", "3")) == 0
    assert _parts(out) == _parts(world["ref"]) and (out / "_SUCCESS").is_file()
    # more ranks than shards: rank 9 of 10 owns nothing and exits 0
    fresh = tmp_path / "many"
    assert main(_command(world["prompts"], world["images"], fresh, "--plan-only")) == 0
    assert main(_command(world["prompts"], world["images"], fresh, "--rank", "9", "--world-size", "10")) == 0
    assert "0 parts written now (0 images, 0 unreadable), 0 owned" in capsys.readouterr().out


def test_many_processes_need_a_prompts_file_and_a_plan(world, tmp_path, capsys):
    capsys.readouterr()
    assert main(["tag", "--labels", "coco", "--images", str(world["images"]), "--out-dir", str(tmp_path / "o"),
                 "--backbone", "tiny", "--weights", "random", "--rank", "0", "--world-size", "2"]) == 2
    assert "2 processes (--rank/--world-size) need --prompts FILE" in capsys.readouterr().err
    assert main(_command(world["prompts"], world["images"], tmp_path / "o", "--rank", "1", "--world-size", "2",
                         "--plan-timeout", "0.3")) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert "rank 1: waited 0.3 s for" in error and "--plan-only" in error


# -- inputs ------------------------------------------------------------------------------------
def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _encoded(image, kind):
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def test_tar_shards_record_a_corrupt_member_and_an_unknown_kind(world, tmp_path):
    originals = tmp_path / "originals"
    originals.mkdir()
    files = {"000000": (_noise(1), "jpg"), "000001": (_noise(2, mode="RGBA"), "png"),
             "000004": (_noise(3, mode="L"), "jpg"), "000005": (_noise(4), "webp")}
    members = {k: _encoded(im, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[kind]) for k, (im, kind) in files.items()}
    for key, (_, kind) in files.items():
        (originals / f"{key}.{kind}").write_bytes(members[key])
    tars = tmp_path / "tars"
    tars.mkdir()
    _tar(tars / "000000.tar", [("000000.jpg", members["000000"]), ("000000.json", b'{"caption": "x"}'),
                               ("000001.png", members["000001"]), ("000002.jpg", b"corrupt bytes"),
                               ("000003.xyz", b"what is this")])
    _tar(tars / "000001.tar", [("000004.jpg", members["000004"]), ("000005.webp", members["000005"])])
    out = tmp_path / "out"
    assert main(_command(world["prompts"], None, out, "--shards", str(tars / "{000000..000001}.tar"),
                         "--format", "jsonl")) == 0
    plan = json.loads((out / "manifest.json").read_text())
    assert [s["tar"] for s in plan["shards"]] == ["000000.tar", "000001.tar"]
    rows = [r for s in plan["shards"] for r in shards.read_part(shards.part_path(out, s["index"], "jsonl"), "jsonl")]
    assert [(r["id"], r["ok"]) for r in rows] == [("000000", True), ("000001", True), ("000002", False),
                                                  ("000003", False), ("000004", True), ("000005", True)]
    assert rows[2]["error"].startswith("UnidentifiedImageError")
    assert rows[3]["error"] == "no JPEG, PNG or WebP member for this key (members: .xyz)"
    report = json.loads((out / "report.json").read_text())
    assert [(u["id"], u["error"]) for u in report["unreadable"]] == [(r["id"], r["error"]) for r in rows[2:4]]
    # nothing else lost: the good members score as the same images read from files do
    files_out = tmp_path / "files"
    assert main(_command(world["prompts"], originals, files_out, "--format", "jsonl")) == 0
    from_files = {Path(r["id"]).stem: r for r in shards.read_part(shards.part_path(files_out, 0, "jsonl"), "jsonl")}
    for row in rows:
        if row["ok"]:  # other batches: values to 1e-5
            np.testing.assert_allclose(row["scores"], from_files[row["id"]]["scores"], rtol=1e-5)


def test_an_image_list_and_brace_expansion(world, tmp_path):
    assert shards.brace_expand("d/{000008..000011}.tar") == [f"d/{i:06d}.tar" for i in range(8, 12)]
    assert shards.brace_expand("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    listed = ["d0/000.jpg", "grey.jpg", "missing.jpg", "alpha.png"]
    (tmp_path / "list.txt").write_text("\n".join(listed) + "\n\n")
    out = tmp_path / "out"
    assert main(_command(world["prompts"], None, out, "--image-list", str(tmp_path / "list.txt"),
                         "--image-root", str(world["images"]))) == 0
    rows = shards.read_part(shards.part_path(out, 0, "csv"), "csv")
    assert [r["id"] for r in rows] == listed and [r["ok"] for r in rows] == [True, True, False, True]
    assert rows[2]["error"].startswith("FileNotFoundError")
    assert main(["tag", "--merge", str(out), str(tmp_path / "m.csv")]) == 0
    merged, reference = _read_csv(tmp_path / "m.csv"), {r[0]: r for r in _read_csv(world["merged"])[1:]}
    assert [r[0] for r in merged[1:]] == ["d0/000.jpg", "grey.jpg", "alpha.png"]
    for row in merged[1:]:  # other batches than the folder's: values to 1e-5
        np.testing.assert_allclose(np.array(row[3:], float), np.array(reference[row[0]][3:], float), rtol=1e-5)


def test_parquet_parts_merge_to_the_same_file(world, tmp_path):
    if shards.pyarrow_or_none() is None:
        pytest.skip("pyarrow is not installed (the optional extra: pip install 'hiprompt[scale]')")
    out = tmp_path / "pq"
    assert main(_command(world["prompts"], world["images"], out, "--format", "parquet")) == 0
    rows = shards.read_part(shards.part_path(out, 1, "parquet"), "parquet")
    assert list(rows[0]) == list(shards.PART_COLUMNS)
    assert _merged(out) == world["merged"].read_bytes()
    assert json.loads((out / "report.json").read_text()) == json.loads((world["ref"] / "report.json").read_text())


# -- who does what -----------------------------------------------------------------------------
def test_slurm_variables_resolve_as_torchruns():
    for rank, world_size, local in [(0, 1, 0), (3, 8, 1), (13, 16, 5)]:
        torchrun = shards.resolve_world(env={"RANK": str(rank), "WORLD_SIZE": str(world_size),
                                             "LOCAL_RANK": str(local)})
        slurm = shards.resolve_world(env={"SLURM_PROCID": str(rank), "SLURM_NTASKS": str(world_size),
                                          "SLURM_LOCALID": str(local)})
        assert torchrun[:3] == slurm[:3] == (rank, world_size, local)
    # torchrun under srun: torchrun's global rank wins over Slurm's task (one task a node)
    both = {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}
    assert shards.resolve_world(env=both)[:3] == (9, 16, 1)
    # a job array of one-process tasks, counted from its first task id
    array = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "5",
             "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
    assert shards.resolve_world(env=array)[:3] == (2, 5, 0)
    assert shards.resolve_world(env={**array, "RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})[:3] == (9, 20, 1)
    assert shards.resolve_world(env={})[:3] == (0, 1, 0)
    assert shards.resolve_world(2, 4, env=both)[:2] == (2, 4)
    with pytest.raises(ValueError, match="expected 0 <= rank < world size"):
        shards.resolve_world(4, 4, env={})
