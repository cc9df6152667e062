"""Write held-out toy-world images as a multi-label dataset in the project's custom CSV format.

    python -m hiprompt.toyworld.generate --out DIR --n-images 400 --seed 1 [--world toy80]

DIR gets `images/NNNNN.png`, `labels.csv` (header `image,labels`, image path relative to
DIR, labels joined by `|`), `classnames.txt` (the world's class order) and `captions.jsonl`
(scene, caption and objects of every image). Pretraining draws from seed 0, so use another
seed for evaluation.
"""

import argparse
import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from hiprompt.fileio import atomic_write_text
from hiprompt.toyworld.captions import caption_for
from hiprompt.toyworld.draw import make_image
from hiprompt.toyworld.world import TOY, World
from hiprompt.toyworld.worlds import WORLDS, get_world

PRETRAINING_SEED = 0


def write_dataset(out: Path, n_images: int, seed: int, world: World = TOY) -> None:
    if seed == PRETRAINING_SEED:
        raise ValueError(f"seed {seed} is the pretraining seed: held-out images need another seed")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, captions = [], []
    for index in range(n_images):
        image, sample = make_image(seed, index, world)
        relative = f"images/{index:05d}.png"
        image.save(out / relative)
        rows.append((relative, "|".join(sample.labels)))
        captions.append({
            "image": relative, "scene": sample.scene, "caption": caption_for(sample, seed, index, world),
            "objects": [asdict(obj) for obj in sample.objects],
        })
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(("image", "labels"))
    writer.writerows(rows)
    atomic_write_text(out / "labels.csv", table.getvalue())
    atomic_write_text(out / "classnames.txt", "\n".join(world.class_names) + "\n")
    atomic_write_text(out / "captions.jsonl", "".join(json.dumps(c) + "\n" for c in captions))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default=TOY.name, choices=sorted(WORLDS), help="which toy world")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--n-images", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    write_dataset(args.out, args.n_images, args.seed, get_world(args.world))
    print(f"wrote {args.n_images} {args.world} images of seed {args.seed} to {args.out}")


if __name__ == "__main__":
    main()
