from pathlib import Path

import pytest

from hiprompt.data import DataLayoutError, MissingImagesError, read_nuswide

CONCEPTS = ["animal", "beach", "zebra"]
LISTED = [r"actor\0001_2124494179.jpg", r"C:\ImageData\Flickr\beach\0002_11.jpg", r"zoo\0003_7.jpg"]
LABELS = {"animal": [1, 0, 1], "beach": [0, 1, 0], "zebra": [0, 0, 1]}


def _write_nuswide(root: Path, make_images=True):
    """A fixture in the official layout (documented in hiprompt/data/nuswide.py)."""
    (root / "Concepts81.txt").write_text("".join(f"{c}\r\n" for c in CONCEPTS))
    (root / "ImageList").mkdir()
    (root / "ImageList" / "TestImagelist.txt").write_text("".join(f"{p}\r\n" for p in LISTED))
    (root / "TrainTestLabels").mkdir()
    for concept, values in LABELS.items():
        (root / "TrainTestLabels" / f"Labels_{concept}_Test.txt").write_text("".join(f"{v}\n" for v in values))
    if make_images:
        for folder, name in [("actor", "0001_2124494179.jpg"), ("beach", "0002_11.jpg"), ("zoo", "0003_7.jpg")]:
            (root / "Flickr" / folder).mkdir(parents=True, exist_ok=True)
            (root / "Flickr" / folder / name).write_bytes(b"x")


def test_nuswide_fixture_reads_windows_paths_and_aligned_labels(tmp_path):
    _write_nuswide(tmp_path)
    image_set = read_nuswide(tmp_path)
    assert image_set.classnames == CONCEPTS
    assert image_set.image_paths == [
        str(tmp_path / "Flickr" / "actor" / "0001_2124494179.jpg"),
        str(tmp_path / "Flickr" / "beach" / "0002_11.jpg"),
        str(tmp_path / "Flickr" / "zoo" / "0003_7.jpg"),
    ]
    assert image_set.labels.T.tolist() == [LABELS[c] for c in CONCEPTS]


def test_nuswide_label_file_of_wrong_length_is_named(tmp_path):
    _write_nuswide(tmp_path)
    (tmp_path / "TrainTestLabels" / "Labels_beach_Test.txt").write_text("0\n1\n")
    with pytest.raises(DataLayoutError, match=r"Labels_beach_Test\.txt: 2 lines.*3 listed images"):
        read_nuswide(tmp_path)


def test_nuswide_bad_value_names_file_and_line(tmp_path):
    _write_nuswide(tmp_path)
    (tmp_path / "TrainTestLabels" / "Labels_zebra_Test.txt").write_text("0\n0\nyes\n")
    with pytest.raises(DataLayoutError, match=r"Labels_zebra_Test\.txt, line 3"):
        read_nuswide(tmp_path)


def test_nuswide_missing_label_file_describes_layout(tmp_path):
    _write_nuswide(tmp_path)
    (tmp_path / "TrainTestLabels" / "Labels_animal_Test.txt").unlink()
    with pytest.raises(DataLayoutError, match=r"Labels_animal_Test\.txt\nExpected layout"):
        read_nuswide(tmp_path)


def test_nuswide_dead_links_need_the_option(tmp_path):
    _write_nuswide(tmp_path, make_images=False)
    (tmp_path / "Flickr" / "zoo").mkdir(parents=True)
    (tmp_path / "Flickr" / "zoo" / "0003_7.jpg").write_bytes(b"x")
    with pytest.raises(MissingImagesError, match="2 of 3"):
        read_nuswide(tmp_path)
    image_set = read_nuswide(tmp_path, allow_missing=True)
    assert len(image_set) == 1 and image_set.labels.tolist() == [[1, 0, 1]]
