"""Figure 5: test images with their top-3 labels from the hand-crafted prompts and from the
learned ones (the default hierarchical run, seed 1); a correct label is marked with ✓.
Shown: the first test images whose two top-3 sets differ (the first images if none does).

    python scripts/tables/figure5.py --quick                # toy world, 2-epoch prompts
    python scripts/tables/figure5.py --world coco --data DATA --images 8
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from common import Run, World, ours, parse_args, run_all
from hiprompt.config import get_cfg_default
from hiprompt.data.coco import read_coco
from hiprompt.data.custom import read_custom_csv
from hiprompt.fileio import atomic_write_bytes, atomic_write_text

SAVE = ("TEST.SAVE_SCORES", True)


def test_images(world: World):
    """The test set's images, in the order the evaluation scored them."""
    cfg = get_cfg_default()
    cfg.merge_from_file(str(world.dataset_cfg))
    if cfg.DATASET.NAME == "CustomMultiLabel":
        classnames = world.data / cfg.DATASET.CLASSNAMES_FILE if cfg.DATASET.CLASSNAMES_FILE else None
        return read_custom_csv(world.data / cfg.DATASET.CSV, classnames)
    if cfg.DATASET.NAME == "COCO":
        return read_coco(world.data, cfg.DATASET.TEST_SPLIT)
    raise SystemExit(f"error: figure5 reads CustomMultiLabel and COCO test sets, not {cfg.DATASET.NAME}")


def top3(scores, classnames):
    return [classnames[i] for i in np.argsort(-scores, kind="stable")[:3]]


def main(argv=None):
    args = parse_args(__doc__, argv, extra=lambda parser: parser.add_argument(
        "--images", type=int, default=6, help="how many test images to show"))
    world = World(args)
    hand = Run("hand-crafted", "ZeroshotCLIP", SAVE, text=None)
    learned = Run("learned", "HierarchicalCoOp", SAVE, evaluates=ours())
    world.seeds = world.seeds[:1]
    run_all(world, [hand, learned])
    stored = [np.load(world.folder(hand) / "scores_test.npz"),
              np.load(world.folder(learned) / f"seed{world.seeds[0]}" / "scores_test.npz")]
    images = test_images(world)
    if len(images.image_paths) != len(stored[0]["scores"]):
        raise SystemExit("error: some test images could not be read, so scores and images do not line up")
    classnames = list(stored[0]["classnames"])
    labels = stored[0]["labels"]
    picks = [i for i in range(len(labels))
             if set(top3(stored[0]["scores"][i], classnames)) != set(top3(stored[1]["scores"][i], classnames))][:args.images]
    picks = picks or list(range(min(args.images, len(labels))))  # no disagreement: the first images
    draw(world, images.image_paths, picks, stored, labels, classnames)


def draw(world, paths, picks, stored, labels, classnames):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(picks), figsize=(2.6 * len(picks), 3.6), squeeze=False)
    lines = ["| image | ground truth | hand-crafted top-3 | learned top-3 |", "|---|---|---|---|"]
    for axis, index in zip(axes[0], picks):
        truth = {classnames[c] for c in np.flatnonzero(labels[index])}
        with Image.open(paths[index]) as image:
            axis.imshow(image.convert("RGB"))
        axis.axis("off")
        marked = [", ".join(f"{name}{' ✓' if name in truth else ''}" for name in top3(s["scores"][index], classnames))
                  for s in stored]
        axis.set_title(f"hand: {marked[0]}\nlearned: {marked[1]}", fontsize=6)
        lines.append(f"| {Path(paths[index]).name} | {', '.join(sorted(truth))} | {marked[0]} | {marked[1]} |")
    fig.suptitle("Figure 5: top-3 labels, hand-crafted vs learned prompts", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    plt.close(fig)
    atomic_write_bytes(world.output / "figure5.png", buffer.getvalue())
    atomic_write_text(world.output / "figure5.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {world.output / 'figure5.png'} and {world.output / 'figure5.md'}")


if __name__ == "__main__":
    main()
