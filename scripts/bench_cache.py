"""What the frozen-feature caches buy, measured side by side in one run.

    python scripts/bench_cache.py --root ../shared/data/coco-mini [--backbone RN50 --weights random]

1. Evaluation: first run (image encoder over every image) vs second run (feature cache).
2. Training step: prompts only (cached description features) vs also re-encoding the
   batch's descriptions with the frozen text encoder, as a step without the cache would.
Prints seconds and the ratios.
"""

import argparse
import tempfile
import time

import torch

from hiprompt.cache.image_features import image_features
from hiprompt.classnames import COCO_CLASSES
from hiprompt.clip import build_clip
from hiprompt.config import get_cfg_default
from hiprompt.data import ImageFeatureDataset, read_coco
from hiprompt.model.method import PromptedCLIP
from hiprompt.training.build import build_test_transform


def time_call(fn, repeat=1):
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="COCO-layout root with annotations/ and val2017/")
    parser.add_argument("--split", default="val2017")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--size", type=int, default=0, help="input size (default: the backbone's)")
    parser.add_argument("--batch", type=int, default=32, help="descriptions per training step")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)

    clip = build_clip(args.backbone, args.weights)
    cfg = get_cfg_default()
    size = args.size or clip.image_size
    cfg.INPUT.SIZE = (size, size)
    images = ImageFeatureDataset.for_test(read_coco(args.root, args.split), build_test_transform(cfg))
    with tempfile.TemporaryDirectory() as cache:
        run = lambda: image_features(clip, images, cache, progress=False)  # noqa: E731
        cold, warm = time_call(run), time_call(run)
    print(f"evaluation features, {len(images)} images: encoder {cold:.2f} s, cache {warm:.3f} s, "
          f"ratio {cold / warm:.0f}x")

    model = PromptedCLIP(clip, COCO_CLASSES, {"coarse": [], "fine": []}, cfg.TRAINER.HIPROMPT)
    optimizer = torch.optim.SGD(model.prompts.parameters(), lr=0.002)
    texts = [f"a photo of a {name} next to a {other}." for name, other in zip(COCO_CLASSES, COCO_CLASSES[1:] * 2)]
    texts = (texts * (args.batch // len(texts) + 1))[:args.batch]
    labels = torch.zeros(len(texts), len(COCO_CLASSES))
    labels[torch.arange(len(texts)), torch.arange(len(texts)) % len(COCO_CLASSES)] = 1
    tokens = clip.tokenize(texts)
    cached = clip.encode_text(tokens)

    def step(features):
        loss, _ = model.text_loss(*features, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with_cache = time_call(lambda: step(cached), args.steps)
    without = time_call(lambda: step(clip.encode_text(tokens)), args.steps)
    print(f"training step, {len(texts)} descriptions x {len(COCO_CLASSES)} classes: cached {with_cache:.3f} s, "
          f"re-encoding {without:.3f} s, ratio {without / with_cache:.2f}x")


if __name__ == "__main__":
    main()
