"""Class vocabularies of the three benchmarks, and the readable names used in prompts.

The label names are the data sets' own (COCO category names, VOC class ids, NUS-WIDE
concept names); every module refers to a class by its label name. `prompt_name` turns a
label name into the phrase a hand-crafted prompt uses ("mouse" -> "computer mouse");
`taidpt_name` into TaI-DPT's name ("motorcycle" -> "motor bike").
`read_class_list` reads the one format of a class list in a file.
"""

from pathlib import Path

COCO_CLASSES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
]

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]

NUSWIDE_CLASSES = [
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings",
    "cars", "castle", "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing",
    "dog", "earthquake", "elk", "fire", "fish", "flags", "flowers", "food", "fox", "frost",
    "garden", "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map",
    "military", "moon", "mountain", "nighttime", "ocean", "person", "plane", "plants",
    "police", "protest", "railroad", "rainbow", "reflection", "road", "rocks", "running",
    "sand", "sign", "sky", "snow", "soccer", "sports", "statue", "street", "sun", "sunset",
    "surf", "swimmers", "tattoo", "temple", "tiger", "tower", "town", "toy", "train", "tree",
    "valley", "vehicle", "water", "waterfall", "wedding", "whales", "window", "zebra",
]

BUILTIN_CLASS_SETS = {
    "coco": COCO_CLASSES,
    "voc2007": VOC_CLASSES,
    "nuswide": NUSWIDE_CLASSES,
}

# Label names that read badly (or ambiguously) in a sentence, and the phrase used instead.
_PROMPT_NAMES = {
    # COCO
    "tv": "television",
    "mouse": "computer mouse",
    "remote": "remote control",
    "keyboard": "computer keyboard",
    "hair drier": "hair dryer",
    "sports ball": "ball",
    "orange": "orange fruit",
    # VOC
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "tvmonitor": "tv monitor",
    # NUS-WIDE (plural concept names read as the scene they name)
    "nighttime": "night time",
    "surf": "surfing",
}


# TaI-DPT's names where they are not the label (its datasets/data_helpers.py: the first name
# of each class's synonym list; its VOC2007 and NUS-WIDE names are the labels)
TAIDPT_NAMES = {"motorcycle": "motor bike", "airplane": "aeroplane"}


def taidpt_name(label: str) -> str:
    """The name TaI-DPT writes for `label` (in its prompts and template sentences)."""
    return TAIDPT_NAMES.get(label, label)


def label_phrase(label: str) -> str:
    """A label name as written in a sentence: the label itself, underscores as spaces
    (the paper's class label Y_i after learned context tokens)."""
    return label.replace("_", " ")


def prompt_name(label: str) -> str:
    """The phrase that stands for `label` in a sentence (a label name is returned unchanged
    unless it is known to read badly)."""
    return _PROMPT_NAMES.get(label, label_phrase(label))


def builtin_class_set(name: str) -> list:
    """The label names of a built-in class set (`coco`, `voc2007`, `nuswide`)."""
    try:
        return list(BUILTIN_CLASS_SETS[name])
    except KeyError:
        raise KeyError(
            f"unknown class set {name!r}: expected one of {sorted(BUILTIN_CLASS_SETS)} "
            "or a text file with one class name per line"
        ) from None


class ClassListError(ValueError):
    """A class-list file that names no class, lists one twice or is not UTF-8 text."""


def read_class_list(path) -> list:
    """The class names of a text file, one a line, in file order: UTF-8 (a byte-order mark
    tolerated), each line stripped, blank lines and lines starting with `#` skipped. A class
    listed twice is a `ClassListError` naming both lines (a label names one class), and so
    is a file without a class; a missing file is a FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class list not found: {path} (expected a text file, one class name a line)")
    names, first_line = [], {}
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                name = line.strip()
                if not name or name.startswith("#"):
                    continue
                if name in first_line:
                    raise ClassListError(f"{path}, line {number}: class {name!r} repeats line {first_line[name]}")
                first_line[name] = number
                names.append(name)
    except UnicodeDecodeError as error:
        raise ClassListError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not names:
        raise ClassListError(f"{path}: no class names (expected one class name a line; `#` starts a comment line)")
    return names


def read_classes(spec: str):
    """(label names, source): a built-in set's name, or a class-list file
    (`read_class_list`: one class a line, blank and `#` lines skipped)."""
    if spec in BUILTIN_CLASS_SETS:
        return builtin_class_set(spec), spec
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"--classes {spec!r}: neither a built-in class set ({sorted(BUILTIN_CLASS_SETS)}) "
            "nor an existing file"
        )
    return read_class_list(path), str(path)
