"""A user's own multi-label test set, described by a CSV file.

CSV format (UTF-8, a byte-order mark allowed; header required):

    image,labels
    photos/beach.jpg,person|dog|surfboard
    /abs/path/kitchen.jpg,oven
    photos/empty_room.jpg,

`image` is a path relative to the CSV file's folder, or absolute. `labels` holds the image's
class names joined by `|` (empty: no class present). An optional class-name file (one name a
line, blank and `#` lines skipped: `hiprompt.classnames.read_class_list`) fixes the classes
and their order; without it the classes are the sorted union of the labels in the CSV. A
label not in the class-name file is an error.
"""

import csv
from pathlib import Path
from typing import Optional

import numpy as np

from hiprompt.classnames import ClassListError, read_class_list
from hiprompt.data.base import DataLayoutError, MultiLabelImageSet

HEADER = ["image", "labels"]
LABEL_SEPARATOR = "|"


def read_classnames_file(path) -> list:
    """The class-name file (`hiprompt.classnames.read_class_list`), its errors as `DataLayoutError`."""
    path = Path(path)
    if not path.is_file():
        raise DataLayoutError(f"class-name file not found: {path} (expected one class name a line)")
    try:
        return read_class_list(path)
    except ClassListError as error:
        raise DataLayoutError(str(error)) from None


def _read_rows(csv_path: Path) -> list:
    """[(line number, image path, [label, ...]), ...]"""
    if not csv_path.is_file():
        raise DataLayoutError(
            f"custom data set CSV not found: {csv_path} (expected a CSV with header "
            f"`image,labels`, labels joined by `{LABEL_SEPARATOR}`)"
        )
    rows = []
    with open(csv_path, "r", encoding="utf-8-sig", newline="") as handle:  # Excel's "CSV UTF-8" starts with a BOM
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [field.strip() for field in header] != HEADER:
            raise DataLayoutError(
                f"{csv_path}, line 1: header {header!r}; expected `image,labels`"
            )
        for fields in reader:
            number = reader.line_num
            if not fields or all(not field.strip() for field in fields):
                continue
            if len(fields) != 2 or not fields[0].strip():
                raise DataLayoutError(
                    f"{csv_path}, line {number}: {fields!r}; expected `<image path>,<label>|<label>...`"
                )
            labels = [label.strip() for label in fields[1].split(LABEL_SEPARATOR) if label.strip()]
            rows.append((number, fields[0].strip(), labels))
    if not rows:
        raise DataLayoutError(f"{csv_path}: no image rows after the header")
    return rows


def read_custom_csv(
    csv_path,
    classnames_file: Optional[str] = None,
    allow_missing: bool = False,
    name: Optional[str] = None,
) -> MultiLabelImageSet:
    csv_path = Path(csv_path).resolve()
    rows = _read_rows(csv_path)
    if classnames_file:
        classnames = read_classnames_file(classnames_file)
    else:
        classnames = sorted({label for _, _, labels in rows for label in labels})
        if not classnames:
            raise DataLayoutError(f"{csv_path}: no labels in any row, and no class-name file given")
    class_index = {cname: i for i, cname in enumerate(classnames)}

    labels = np.zeros((len(rows), len(classnames)), dtype=np.float32)  # [N, C]
    paths, first_line = [], {}
    for row, (number, image, row_labels) in enumerate(rows):
        path = str((csv_path.parent / image).resolve())
        if path in first_line:
            raise DataLayoutError(
                f"{csv_path}, line {number}: image {image!r} already listed on line {first_line[path]}"
            )
        first_line[path] = number
        paths.append(path)
        for label in row_labels:
            if label not in class_index:
                raise DataLayoutError(
                    f"{csv_path}, line {number}: label {label!r} is not in the class-name file "
                    f"{classnames_file}"
                )
            labels[row, class_index[label]] = 1.0
    return MultiLabelImageSet.from_listed(
        name=name or csv_path.stem,
        classnames=classnames,
        image_paths=paths,
        labels=labels,
        allow_missing=allow_missing,
    )
