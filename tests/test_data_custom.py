from pathlib import Path

import pytest

from hiprompt.classnames import ClassListError, read_class_list
from hiprompt.data import DataLayoutError, read_custom_csv
from hiprompt.data.custom import read_classnames_file


def _images(folder: Path, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_custom_csv_relative_and_absolute_paths(tmp_path):
    _images(tmp_path / "img", "a.jpg", "b.jpg")
    absolute = tmp_path / "elsewhere" / "c.jpg"
    _images(absolute.parent, "c.jpg")
    csv_path = tmp_path / "set.csv"
    csv_path.write_text(f"image,labels\nimg/a.jpg,dog|cat\nimg/b.jpg,\n{absolute}, cat \n")
    image_set = read_custom_csv(csv_path)
    assert image_set.name == "set"
    assert image_set.classnames == ["cat", "dog"]  # sorted union
    assert image_set.image_paths == [str(tmp_path / "img" / "a.jpg"), str(tmp_path / "img" / "b.jpg"), str(absolute)]
    assert image_set.labels.tolist() == [[1, 1], [0, 0], [1, 0]]


def test_classnames_file_fixes_order_and_rejects_unknown_labels(tmp_path):
    _images(tmp_path, "a.jpg", "b.jpg")
    names = tmp_path / "classes.txt"
    names.write_text("zebra\n\ndog\ncat\n")
    csv_path = tmp_path / "set.csv"
    csv_path.write_text("image,labels\na.jpg,dog\nb.jpg,cat|zebra\n")
    assert read_custom_csv(csv_path, classnames_file=names).labels.tolist() == [[0, 1, 0], [1, 0, 1]]

    csv_path.write_text("image,labels\na.jpg,dog\nb.jpg,cat|horse\n")
    with pytest.raises(DataLayoutError, match=r"set\.csv, line 3: label 'horse'.*classes\.txt"):
        read_custom_csv(csv_path, classnames_file=names)


@pytest.mark.parametrize(
    "text, message",
    [
        ("img,label\na.jpg,dog\n", r"line 1: header"),
        ("image,labels\na.jpg,dog\na.jpg,cat\n", r"line 3: image 'a\.jpg' already listed on line 2"),
        ("image,labels\na.jpg,dog,cat\n", r"line 2: .*expected `<image path>,<label>\|<label>"),
        ("image,labels\n", r"no image rows"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, text, message):
    _images(tmp_path, "a.jpg")
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(text)
    with pytest.raises(DataLayoutError, match=rf"bad\.csv.*{message}"):
        read_custom_csv(csv_path)


def test_duplicate_class_name_and_missing_files_are_named(tmp_path):
    names = tmp_path / "classes.txt"
    names.write_text("dog\ncat\ndog\n")
    csv_path = tmp_path / "set.csv"
    csv_path.write_text("image,labels\na.jpg,dog\n")
    with pytest.raises(DataLayoutError, match=r"classes\.txt, line 3: class 'dog' repeats line 1"):
        read_custom_csv(csv_path, classnames_file=names)
    with pytest.raises(DataLayoutError, match=r"nope\.csv"):
        read_custom_csv(tmp_path / "nope.csv")


# -- the one class-list reader (hiprompt.classnames.read_class_list), used here, by the knowledge
# folder (tests/test_knowledge_folder.py) and by llm-knowledge --classes (tests/test_llm_pipeline.py)
def test_class_list_skips_bom_comments_and_blanks(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeffdog\n# pets first\n\n  hot dog \t\r\n   \n#cat\nc#\ncat".encode())
    assert read_class_list(path) == ["dog", "hot dog", "c#", "cat"]
    assert read_classnames_file(path) == ["dog", "hot dog", "c#", "cat"]


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n  \n# only a comment\n"])
def test_class_list_without_a_class_names_the_file(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(ClassListError, match=r"empty\.txt: no class names"):
        read_class_list(path)
    with pytest.raises(DataLayoutError, match=r"empty\.txt: no class names"):
        read_classnames_file(path)


def test_class_list_errors_name_the_file(tmp_path):
    twice = tmp_path / "twice.txt"
    twice.write_text("dog\n# dog\ncat\n dog \n")
    with pytest.raises(ClassListError, match=r"twice\.txt, line 4: class 'dog' repeats line 1"):
        read_class_list(twice)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(ClassListError, match=r"latin\.txt: not UTF-8 text"):
        read_class_list(latin)
    with pytest.raises(FileNotFoundError, match=r"absent\.txt"):
        read_class_list(tmp_path / "absent.txt")


def test_a_byte_order_mark_from_excel_or_notepad_is_skipped(tmp_path):
    """Excel's "CSV UTF-8" and Notepad start the file with a BOM (and end lines with CRLF)."""
    _images(tmp_path / "img", "a.jpg", "b.jpg")
    csv_path = tmp_path / "set.csv"
    csv_path.write_bytes("\ufeffimage,labels\r\nimg/a.jpg,dog|cat\r\nimg/b.jpg,cat\r\n".encode())
    image_set = read_custom_csv(csv_path)
    assert image_set.classnames == ["cat", "dog"]
    assert image_set.image_paths == [str(tmp_path / "img" / "a.jpg"), str(tmp_path / "img" / "b.jpg")]
    assert image_set.labels.tolist() == [[1, 1], [1, 0]]
    names = tmp_path / "classes.txt"  # the test set's class-name file, from the same editor
    names.write_bytes("\ufeffdog\r\ncat\r\n".encode())
    assert read_custom_csv(csv_path, classnames_file=names).classnames == ["dog", "cat"]
    # the image column too: a BOM-less file whose first path starts with U+FEFF is kept as it is
    (tmp_path / "img" / "\ufeffodd.jpg").write_bytes(b"x")
    csv_path.write_text("image,labels\n\ufeffodd.jpg,cat\n".replace("\ufeffodd", "img/\ufeffodd"))
    assert read_custom_csv(csv_path).image_paths == [str(tmp_path / "img" / "\ufeffodd.jpg")]
