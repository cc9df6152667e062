"""PASCAL VOC 2007 read from its per-class image-set lists.

Layout under `voc_dir` (= <data root>/VOCdevkit/VOC2007):
    ImageSets/Main/<split>.txt           the image ids of the split, one a line
    ImageSets/Main/<class>_<split>.txt   "<id> <value>" a line: 1 present, -1 absent, 0 difficult
    JPEGImages/<id>.jpg

Classes are in `hiprompt.classnames.VOC_CLASSES` order. A "difficult" entry (0) counts as
`negative` by default (TaI-DPT's rule); `positive` counts it as present, and `ignore` leaves
it negative but marks it in the set's `ignore` mask so that no metric counts it.
"""

from pathlib import Path

import numpy as np

from hiprompt.choices import check_choice
from hiprompt.classnames import VOC_CLASSES
from hiprompt.data.base import DataLayoutError, MultiLabelImageSet

DIFFICULT_POLICIES = ("negative", "positive", "ignore")
LAYOUT = (
    "<root>/VOCdevkit/VOC2007/ImageSets/Main/{<split>.txt, <class>_<split>.txt} and "
    "<root>/VOCdevkit/VOC2007/JPEGImages/<id>.jpg"
)


def _read_lines(path: Path) -> list:
    if not path.is_file():
        raise DataLayoutError(f"VOC2007 list not found: {path}\nExpected layout: {LAYOUT}")
    with open(path, "r", encoding="utf-8-sig") as handle:
        return [line.strip() for line in handle]


def _read_split_ids(path: Path) -> list:
    ids = [line for line in _read_lines(path) if line]
    if len(set(ids)) != len(ids):
        raise DataLayoutError(f"{path}: an image id is listed twice")
    return ids


def _read_class_values(path: Path, id_index: dict) -> np.ndarray:
    values = np.zeros(len(id_index), dtype=np.int8)  # [N]
    seen = np.zeros(len(id_index), dtype=bool)  # [N]
    for number, line in enumerate(_read_lines(path), start=1):
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("1", "-1", "0"):
            raise DataLayoutError(
                f"{path}, line {number}: {line!r}; expected '<image id> <1|-1|0>'"
            )
        if fields[0] not in id_index:
            raise DataLayoutError(f"{path}, line {number}: image id {fields[0]} is not in the split list")
        values[id_index[fields[0]]] = int(fields[1])
        seen[id_index[fields[0]]] = True
    if not seen.all():
        raise DataLayoutError(
            f"{path}: {int((~seen).sum())} image ids of the split list have no value here"
        )
    return values


def read_voc2007(
    voc_dir,
    split: str = "test",
    difficult: str = "negative",
    allow_missing: bool = False,
) -> MultiLabelImageSet:
    check_choice(difficult, DIFFICULT_POLICIES, "DATASET.VOC_DIFFICULT")
    voc_dir = Path(voc_dir)
    main = voc_dir / "ImageSets" / "Main"
    ids = _read_split_ids(main / f"{split}.txt")
    id_index = {image_id: i for i, image_id in enumerate(ids)}

    values = np.stack(
        [_read_class_values(main / f"{name}_{split}.txt", id_index) for name in VOC_CLASSES], axis=1
    )  # [N, C] in {1, -1, 0}
    is_difficult = values == 0  # [N, C]
    labels = (values == 1) | (is_difficult & (difficult == "positive"))  # [N, C]
    return MultiLabelImageSet.from_listed(
        name=f"voc2007-{split}",
        classnames=VOC_CLASSES,
        image_paths=[str(voc_dir / "JPEGImages" / f"{image_id}.jpg") for image_id in ids],
        labels=labels.astype(np.float32),
        ignore=is_difficult if difficult == "ignore" else None,
        allow_missing=allow_missing,
    )
