"""Image captions -> a knowledge folder: COCO's captions format, JSON lines, plain lines."""

import json

import numpy as np
import pytest

from hiprompt.data.knowledge import KnowledgeFolder
from llm_knowledge.captions import main, read_captions, write_caption_folder

CLASSES = ["dog", "cat", "car", "bus"]


def coco_captions_file(path, captions):
    path.write_text(json.dumps({
        "info": {}, "licenses": [], "images": [{"id": 1, "file_name": "1.jpg"}],
        "annotations": [{"image_id": 1, "id": i, "caption": c} for i, c in enumerate(captions)],
    }))
    return path


def test_coco_captions_become_a_folder_training_reads(tmp_path):
    source = coco_captions_file(tmp_path / "captions_train2017.json", [
        "A dog sitting next to a cat.", "A red car parked by the road.", "A view of the mountains.",
        "Two buses and a car on a street."])
    assert main(["--classes", str(write_classes(tmp_path)), "--captions", str(source),
                 "--out", str(tmp_path / "knowledge")]) == 0
    folder = KnowledgeFolder(tmp_path / "knowledge")  # checks every file against the manifest
    corpus = folder.corpus()
    assert corpus.texts == ["A dog sitting next to a cat.", "A red car parked by the road.",
                            "Two buses and a car on a street."]
    assert corpus.kinds == ["caption"] * 3
    np.testing.assert_array_equal(corpus.labels, [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]])
    manifest = json.loads((tmp_path / "knowledge" / "manifest.json").read_text())
    assert manifest["captions"] == {"read": 4, "labelled": 3, "naming_no_class": 1}
    assert folder.groups == {"coarse": [], "fine": []}


def write_classes(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


def test_json_lines_and_plain_lines_are_read_in_order(tmp_path):
    lines = tmp_path / "captions.jsonl"
    lines.write_text('{"image": "a.png", "caption": "a dog."}\n\n{"caption": "a cat."}\n')
    assert read_captions(lines) == ["a dog.", "a cat."]
    plain = tmp_path / "captions.txt"
    plain.write_text("a bus.\n\n  a car on a road. \n")
    assert read_captions(plain) == ["a bus.", "a car on a road."]


@pytest.mark.parametrize("content, message", [
    ('{"images": []}', r"captions_train2017.json: expected the COCO captions format"),
    ('{"annotations": [{"caption": "a dog."}, {"id": 3}]}', r"annotation 2 is \{\"id\": 3\}"),
    ("{not json", r"captions_train2017.json: not valid JSON"),
])
def test_malformed_coco_captions_are_named(tmp_path, content, message):
    path = tmp_path / "captions_train2017.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_captions(path)


def test_bad_json_line_is_named_and_captions_naming_no_class_are_refused(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"caption": "a dog."}\n{"text": "a cat."}\n')
    with pytest.raises(ValueError, match=r"c.jsonl, line 2: expected an object with a 'caption' string"):
        read_captions(path)
    with pytest.raises(ValueError, match="none of the 1 captions names one of the 4 classes"):
        write_caption_folder(["a view of the sea."], CLASSES, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_byte_order_mark_is_not_part_of_the_first_caption(tmp_path):
    """Caption files written by hand (Notepad, Excel's "Unicode text") may start with a BOM."""
    plain = tmp_path / "captions.txt"
    plain.write_bytes("\ufeffa bus.\r\na car on a road.\r\n".encode())
    assert read_captions(plain) == ["a bus.", "a car on a road."]
    lines = tmp_path / "captions.jsonl"
    lines.write_bytes('\ufeff{"caption": "a dog."}\n{"caption": "a cat."}\n'.encode())
    assert read_captions(lines) == ["a dog.", "a cat."]
    coco = coco_captions_file(tmp_path / "captions_val2017.json", ["a dog.", "a red car."])
    coco.write_bytes(b"\xef\xbb\xbf" + coco.read_bytes())
    assert read_captions(coco) == ["a dog.", "a red car."]
