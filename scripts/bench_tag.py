"""Throughput of `hiprompt tag --out-dir` (docs/tag-at-scale.md): images per second for JPEG
decoding alone on one CPU core, for one process end to end, and for 2 processes under torchrun.

    OMP_NUM_THREADS=1 python scripts/bench_tag.py [--device cpu|cuda] [--backbone tiny|RN50] [--images 512]
        [--workers N] [--batch 64] [--nproc 2]

Writes `--images` synthetic JPEGs (640 x 480, quality 90, as scripts/bench_images.py) and a
prompts file for the 80 COCO labels on the backbone with random weights (the speed does not
depend on the weights), then:

1. decode: open, EXIF transpose, the test transform, one process and one thread;
2. one process: `python -m hiprompt.apps.cli tag --out-dir` with `--workers` reading processes;
3. torchrun: `torchrun --standalone --nproc-per-node N -m hiprompt.apps.cli tag --out-dir`.

For 2 and 3 the wall time of the command is measured, and the fixed cost (start-up, model
build, plan check) is measured by running the same command again on the finished folder;
images/s is the images over (wall - fixed). Prints the machine line first.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from hiprompt.apps import tag
from hiprompt.classnames import builtin_class_set
from hiprompt.config import apply_settings, get_cfg_default, result_settings
from hiprompt.data.transforms import TestTransform
from hiprompt.model.method import PromptedCLIP
from hiprompt.training.build import build_backbone
from hiprompt.training.checkpoint import PROMPTS_MODEL, save_checkpoint

from bench_step import cpu_name  # scripts/, beside this file

REPO = Path(__file__).resolve().parents[1]


def write_jpegs(folder: Path, count: int) -> list:
    """`count` smooth random 640 x 480 JPEGs (compressible as photos are)."""
    generator = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        coarse = generator.integers(0, 256, size=(15, 20, 3), dtype=np.uint8)
        path = folder / f"{index:06d}.jpg"
        Image.fromarray(coarse).resize((640, 480), Image.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def write_prompts(folder: Path, backbone: str) -> Path:
    cfg = tag.tag_config(backbone, "random")
    clip = build_backbone(cfg)
    labels, groups = builtin_class_set("coco"), {"coarse": [], "fine": []}
    settings = result_settings(get_cfg_default())
    model = PromptedCLIP(clip, labels, groups, apply_settings(get_cfg_default(), settings).TRAINER.HIPROMPT)
    run = {"settings": settings, "backbone": clip.identity(), "classes": labels, "groups": groups}
    return save_checkpoint(folder, PROMPTS_MODEL, 1, model.prompts, run=run), clip.image_size


def decode_rate(paths, size: int) -> float:
    torch.set_num_threads(1)
    transform = TestTransform(size=size).build()
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image.load()
            transform(ImageOps.exif_transpose(image))
    return len(paths) / (time.perf_counter() - started)


def timed(command, env) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def end_to_end(launcher, args, prompts, images, out: Path, env) -> tuple:
    """(wall seconds, fixed seconds, images/s) of one tagging command, run and then rerun."""
    command = [*launcher, "tag", "--prompts", str(prompts), "--images", str(images), "--out-dir", str(out),
               "--backbone", args.backbone, "--weights", "random", "--device", args.device, "--workers",
               str(args.workers), "--batch-size", str(args.batch), "--shard-size", str(args.shard_size),
               "--no-progress"]
    wall = timed(command, env)
    fixed = timed(command, env)  # every part is there: start-up, model, plan check only
    return wall, fixed, args.images / max(wall - fixed, 1e-9)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the processes use cuda:LOCAL_RANK)")
    parser.add_argument("--backbone", default="tiny", help="tiny (64 px) or an open_clip name such as RN50")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--workers", type=int, default=1, help="reading processes per tagging process")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--nproc", type=int, default=2, help="processes under torchrun")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" and torch.cuda.is_available() else "none"
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, GPU {gpu}, OMP_NUM_THREADS="
          f"{env['OMP_NUM_THREADS']}, torch {torch.__version__}, python {platform.python_version()}; "
          f"backbone {args.backbone} (random weights), {args.images} JPEGs 640x480, batch {args.batch}, "
          f"workers {args.workers} per process, shards of {args.shard_size}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_jpegs(tmp / "images", args.images)
        prompts, size = write_prompts(tmp / "prompts", args.backbone)
        rate = decode_rate(paths, size)
        print(f"decode (JPEG + EXIF + transform to {size} px), one CPU core: {rate:8.1f} images/s")
        one = end_to_end([sys.executable, "-m", "hiprompt.apps.cli"], args, prompts, tmp / "images", tmp / "one", env)
        print(f"one process end to end:   {one[2]:8.1f} images/s  (wall {one[0]:.1f} s, fixed cost {one[1]:.1f} s)")
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                    str(args.nproc), "-m", "hiprompt.apps.cli"]
        many = end_to_end(launcher, args, prompts, tmp / "images", tmp / "many", env)
        print(f"torchrun, {args.nproc} processes:      {many[2]:8.1f} images/s  (wall {many[0]:.1f} s, "
              f"fixed cost {many[1]:.1f} s)")
        same = all((tmp / "one" / "parts" / p.name).read_bytes() == p.read_bytes()
                   for p in (tmp / "many" / "parts").iterdir())
        print(f"parts of the two runs byte-identical: {same}")


if __name__ == "__main__":
    main()
