"""Image throughput of evaluation and tagging: JPEG decoding, the test transform and the image
encoder, each on its own and together, in one run.

    python scripts/bench_images.py [--device cuda] [--images 2048] [--workers N] [--batch 256]

Writes `--images` synthetic JPEGs (640 x 480, quality 90, COCO's typical size) to a temporary
folder, then prints images per second for: decoding + transform alone (the DataLoader with
`--workers` processes), the encoder alone (global and dense features of ready tensors, RN50
random weights at 224 px unless told otherwise), and the evaluation path end to end
(`hiprompt.cache.image_features.image_features`: decode, transform, encode, cache write).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hiprompt.cache.image_features import image_features
from hiprompt.clip import build_clip
from hiprompt.data.base import MultiLabelImageSet
from hiprompt.data.image_dataset import ImageFeatureDataset
from hiprompt.data.transforms import TestTransform


def write_jpegs(folder: Path, count: int) -> list:
    """`count` smooth random 640 x 480 JPEGs (compressible as photos are, unlike white noise)."""
    generator = np.random.default_rng(0)
    paths = []
    for index in range(count):
        coarse = generator.integers(0, 256, size=(15, 20, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((640, 480), Image.BICUBIC)
        path = folder / f"{index:06d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding processes (default: all CPUs)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--backbone", default="RN50")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    clip = build_clip(args.backbone, "random", seed=0).to(device)
    transform = TestTransform(size=clip.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), args.images)
        image_set = MultiLabelImageSet(name="bench", classnames=[], image_paths=paths,
                                       labels=np.zeros((len(paths), 0)))
        rates = {}
        loader = DataLoader(ImageFeatureDataset(image_set, transform.build()), batch_size=args.batch,
                            num_workers=args.workers, pin_memory=device.type == "cuda")
        start = time.perf_counter()
        for _ in loader:
            pass
        rates["decode + transform"] = len(paths) / (time.perf_counter() - start)

        batch = torch.randn(args.batch, 3, clip.image_size, clip.image_size, device=device)  # [B, 3, H, W]
        clip.encode_image_features(batch)  # warm-up
        sync(device)
        repeat = max(1, len(paths) // args.batch)
        start = time.perf_counter()
        for _ in range(repeat):
            clip.encode_image_features(batch)
        sync(device)
        rates["encoder (global + dense)"] = repeat * args.batch / (time.perf_counter() - start)

        start = time.perf_counter()
        image_features(clip, ImageFeatureDataset.for_test(image_set, transform), cache_dir=Path(tmp) / "cache",
                       batch_size=args.batch, num_workers=args.workers, device=device, progress=False)
        sync(device)
        rates["evaluation path, end to end"] = len(paths) / (time.perf_counter() - start)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.backbone} random weights at {clip.image_size} px on {name}, {args.images} JPEGs 640x480, "
          f"batch {args.batch}, {args.workers} decoding workers, torch threads {torch.get_num_threads()}")
    for part, rate in rates.items():
        print(f"  {part:30} {rate:9.0f} images/s")


if __name__ == "__main__":
    main()
