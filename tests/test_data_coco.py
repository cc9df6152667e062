import json
from pathlib import Path

import numpy as np
import pytest

from hiprompt.data import DataLayoutError, MissingImagesError, read_coco

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_MINI = SHARED_DATA / "coco-mini"
needs_coco_mini = pytest.mark.skipif(
    not (COCO_MINI / "annotations" / "instances_val2017.json").is_file(),
    reason=f"real COCO subset not found at {COCO_MINI} (see shared/data/README.md)",
)


def _write_coco(root: Path, split: str, images, annotations, categories, make_files=True):
    (root / "annotations").mkdir(parents=True)
    (root / split).mkdir()
    with open(root / "annotations" / f"instances_{split}.json", "w") as handle:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
    if make_files:
        for image in images:
            (root / split / image["file_name"]).write_bytes(b"jpeg")


@needs_coco_mini
def test_coco_mini_matches_the_json():
    image_set = read_coco(COCO_MINI, split="val2017")
    data = json.loads((COCO_MINI / "annotations" / "instances_val2017.json").read_text())
    cat_ids = sorted(c["id"] for c in data["categories"])
    names = {c["id"]: c["name"] for c in data["categories"]}
    expected = {img["id"]: set() for img in data["images"]}
    for ann in data["annotations"]:
        expected[ann["image_id"]].add(ann["category_id"])

    assert len(image_set) == 128 and image_set.missing == []
    assert image_set.classnames == [names[i] for i in cat_ids]
    assert image_set.classnames[0] == "person" and image_set.num_classes == 80
    for img, path, row in zip(data["images"], image_set.image_paths, image_set.labels):
        assert Path(path) == COCO_MINI / "val2017" / img["file_name"]
        assert {cat_ids[c] for c in np.flatnonzero(row)} == expected[img["id"]]
    assert image_set.labels.sum() == sum(len(v) for v in expected.values())
    per_class = image_set.labels.sum(axis=0)
    for c, cat_id in enumerate(cat_ids):
        assert per_class[c] == sum(cat_id in v for v in expected.values())
    assert (per_class > 0).sum() == 73  # as documented in shared/data/README.md


def test_unannotated_images_kept_by_default_and_droppable(tmp_path):
    images = [{"id": 5, "file_name": "a.jpg"}, {"id": 3, "file_name": "b.jpg"}]
    categories = [{"id": 7, "name": "dog"}, {"id": 2, "name": "cat"}]
    annotations = [{"image_id": 5, "category_id": 7}, {"image_id": 5, "category_id": 2},
                   {"image_id": 5, "category_id": 7}]
    _write_coco(tmp_path, "val2014", images, annotations, categories)

    kept = read_coco(tmp_path, "val2014")
    assert kept.classnames == ["cat", "dog"]  # category-id order
    assert kept.labels.tolist() == [[1, 1], [0, 0]]
    dropped = read_coco(tmp_path, "val2014", keep_unannotated=False)
    assert [Path(p).name for p in dropped.image_paths] == ["a.jpg"]


def test_missing_annotation_file_names_the_file_and_layout(tmp_path):
    with pytest.raises(DataLayoutError, match=r"instances_val2014\.json.*\n.*annotations/instances_<split>"):
        read_coco(tmp_path, "val2014")


def test_annotation_with_unknown_category_is_an_error(tmp_path):
    _write_coco(tmp_path, "val2017", [{"id": 1, "file_name": "a.jpg"}],
                [{"image_id": 1, "category_id": 99}], [{"id": 1, "name": "person"}])
    with pytest.raises(DataLayoutError, match="annotation #0"):
        read_coco(tmp_path, "val2017")


def test_missing_images_follow_the_policy(tmp_path, caplog):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}]
    _write_coco(tmp_path, "val2017", images, [], [{"id": 1, "name": "person"}], make_files=False)
    (tmp_path / "val2017" / "a.jpg").write_bytes(b"x")
    with pytest.raises(MissingImagesError, match=r"(?s)1 of 2 listed images.*b\.jpg.*ALLOW_MISSING_IMAGES True"):
        read_coco(tmp_path, "val2017")
    with caplog.at_level("WARNING"):
        image_set = read_coco(tmp_path, "val2017", allow_missing=True)
    assert [Path(p).name for p in image_set.image_paths] == ["a.jpg"]
    assert [Path(p).name for p in image_set.missing] == ["b.jpg"]
    assert "1 of 2 listed images are not on disk" in caplog.text
