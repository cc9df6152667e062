"""MS-COCO (2014 or 2017) read from its instances annotation file.

Layout under `root`:
    annotations/instances_<split>.json   (COCO instances format)
    <split>/<file_name>                   (the images, e.g. val2014/COCO_val2014_000000000042.jpg)

Classes are the JSON's categories ordered by category id, named as the JSON names them.
Images are in the JSON's order. Images without any annotation are kept (all-negative rows,
TaI-DPT's rule) unless `keep_unannotated=False` (DualCoOp's rule).
"""

import json
from pathlib import Path

import numpy as np

from hiprompt.data.base import DataLayoutError, MultiLabelImageSet

LAYOUT = "<root>/annotations/instances_<split>.json and <root>/<split>/<image files>"


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DataLayoutError(f"COCO annotation file not found: {path}\nExpected layout: {LAYOUT}")
    try:
        with open(path, "r", encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise DataLayoutError(f"{path}: not valid JSON ({err})") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataLayoutError(
                f"{path}: no {key!r} list; expected a COCO instances file with "
                "'images', 'annotations' and 'categories'"
            )
    return data


def read_coco(
    root,
    split: str = "val2014",
    keep_unannotated: bool = True,
    allow_missing: bool = False,
) -> MultiLabelImageSet:
    root = Path(root)
    ann_path = root / "annotations" / f"instances_{split}.json"
    data = _load_json(ann_path)

    categories = sorted(data["categories"], key=lambda cat: cat["id"])
    class_index = {cat["id"]: i for i, cat in enumerate(categories)}
    image_index = {img["id"]: i for i, img in enumerate(data["images"])}

    labels = np.zeros((len(image_index), len(categories)), dtype=np.float32)  # [N, C]
    for number, ann in enumerate(data["annotations"]):
        try:
            row = image_index[ann["image_id"]]
            col = class_index[ann["category_id"]]
        except KeyError as err:
            raise DataLayoutError(
                f"{ann_path}: annotation #{number} refers to an unknown image or category id {err}"
            ) from None
        labels[row, col] = 1.0

    keep = np.ones(len(image_index), dtype=bool)  # [N]
    if not keep_unannotated:
        keep = labels.any(axis=1)
    image_dir = root / split
    paths = [str(image_dir / img["file_name"]) for img in data["images"]]
    return MultiLabelImageSet.from_listed(
        name=f"coco-{split}",
        classnames=[cat["name"] for cat in categories],
        image_paths=[p for p, k in zip(paths, keep) if k],
        labels=labels[keep],
        allow_missing=allow_missing,
    )
