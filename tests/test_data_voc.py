from pathlib import Path

import numpy as np
import pytest

from hiprompt.classnames import VOC_CLASSES
from hiprompt.data import DataLayoutError, MissingImagesError, read_voc2007

VOC_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "voc2007-mini" / "VOCdevkit" / "VOC2007"
PRESENT = ["000342", "000542", "003123", "004101", "008591"]
needs_voc_mini = pytest.mark.skipif(
    not (VOC_MINI / "ImageSets" / "Main" / "test.txt").is_file(),
    reason=f"real VOC2007 subset not found at {VOC_MINI} (see shared/data/README.md)",
)


def _list_values(voc_dir: Path, image_id: str) -> dict:
    """class -> value of `image_id` in <class>_test.txt, read independently of the reader."""
    values = {}
    for name in VOC_CLASSES:
        for line in (voc_dir / "ImageSets" / "Main" / f"{name}_test.txt").read_text().splitlines():
            if line.split() and line.split()[0] == image_id:
                values[name] = int(line.split()[1])
    return values


@needs_voc_mini
def test_voc_mini_refuses_missing_images_by_default():
    with pytest.raises(MissingImagesError, match=r"(?s)4947 of 4952 listed images.*ALLOW_MISSING_IMAGES True"):
        read_voc2007(VOC_MINI)


@needs_voc_mini
@pytest.mark.parametrize("policy", ["negative", "positive", "ignore"])
def test_voc_mini_present_images_match_the_lists(policy):
    image_set = read_voc2007(VOC_MINI, difficult=policy, allow_missing=True)
    assert [Path(p).stem for p in image_set.image_paths] == PRESENT
    assert len(image_set.missing) == 4952 - 5
    assert image_set.classnames == VOC_CLASSES
    for row, image_id in enumerate(PRESENT):
        values = _list_values(VOC_MINI, image_id)
        for c, name in enumerate(VOC_CLASSES):
            expected = values[name] == 1 or (values[name] == 0 and policy == "positive")
            assert image_set.labels[row, c] == float(expected), (image_id, name)
            if policy == "ignore":
                assert image_set.ignore[row, c] == (values[name] == 0)
    assert (image_set.ignore is not None) == (policy == "ignore")
    # 000342 has a difficult tvmonitor in the official lists
    assert _list_values(VOC_MINI, "000342")["tvmonitor"] == 0


def _write_voc(voc_dir: Path, ids, values):
    main = voc_dir / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "test.txt").write_text("".join(f"{i}\r\n" for i in ids))
    for c, name in enumerate(VOC_CLASSES):
        (main / f"{name}_test.txt").write_text("".join(f"{i} {v[c]:2d}\n" for i, v in zip(ids, values)))
    (voc_dir / "JPEGImages").mkdir()
    for i in ids:
        (voc_dir / "JPEGImages" / f"{i}.jpg").write_bytes(b"x")


def test_voc_difficult_policies_on_a_fixture(tmp_path):
    values = [[1, 0] + [-1] * 18, [-1, -1] + [-1] * 17 + [1]]
    _write_voc(tmp_path, ["000001", "000002"], values)
    negative = read_voc2007(tmp_path)
    assert negative.labels[0, :2].tolist() == [1, 0] and negative.labels[1, -1] == 1
    assert read_voc2007(tmp_path, difficult="positive").labels[0, :2].tolist() == [1, 1]
    ignored = read_voc2007(tmp_path, difficult="ignore")
    assert ignored.labels[0, :2].tolist() == [1, 0] and np.flatnonzero(ignored.ignore).tolist() == [1]
    with pytest.raises(ValueError, match="expected one of"):
        read_voc2007(tmp_path, difficult="skip")


def test_voc_malformed_line_names_file_and_line(tmp_path):
    _write_voc(tmp_path, ["000001", "000002"], [[-1] * 20, [-1] * 20])
    bad = tmp_path / "ImageSets" / "Main" / "cow_test.txt"
    bad.write_text("000001 -1\n000002 2\n")
    with pytest.raises(DataLayoutError, match=r"cow_test\.txt, line 2"):
        read_voc2007(tmp_path)


def test_voc_missing_list_describes_layout(tmp_path):
    with pytest.raises(DataLayoutError, match=r"test\.txt.*\n.*VOCdevkit/VOC2007/ImageSets/Main"):
        read_voc2007(tmp_path)
