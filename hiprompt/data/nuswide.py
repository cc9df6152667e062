"""NUS-WIDE (81 concepts) read from the official list files.

Layout under `root`:
    Concepts81.txt                                 the 81 concept names, one a line
    ImageList/<split>Imagelist.txt                 one image a line, Windows style
                                                   (`actor\\0001_2124494179.jpg`, possibly
                                                   prefixed by `C:\\ImageData\\Flickr\\`)
    TrainTestLabels/Labels_<concept>_<split>.txt   one 0/1 a line, aligned with the image list
    Flickr/<folder>/<file>.jpg                     the images

`split` is `Test` or `Train`. Classes are in Concepts81.txt's order (alphabetical in the
official release, the same as `hiprompt.classnames.NUSWIDE_CLASSES`).
"""

from pathlib import Path, PureWindowsPath

import numpy as np

from hiprompt.data.base import DataLayoutError, MultiLabelImageSet

LAYOUT = (
    "<root>/Concepts81.txt, <root>/ImageList/<split>Imagelist.txt, "
    "<root>/TrainTestLabels/Labels_<concept>_<split>.txt and <root>/Flickr/<folder>/<image>"
)


def _read_nonempty_lines(path: Path) -> list:
    if not path.is_file():
        raise DataLayoutError(f"NUS-WIDE file not found: {path}\nExpected layout: {LAYOUT}")
    with open(path, "r", encoding="utf-8-sig") as handle:
        lines = [line.strip() for line in handle]
    while lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line:
            raise DataLayoutError(f"{path}, line {number}: empty line")
    return lines


def _relative_image_path(listed: str) -> Path:
    """`C:\\ImageData\\Flickr\\actor\\x.jpg` or `actor\\x.jpg` -> `actor/x.jpg`."""
    parts = PureWindowsPath(listed).parts
    lowered = [part.lower() for part in parts]
    if "flickr" in lowered:
        parts = parts[len(lowered) - lowered[::-1].index("flickr"):]
    return Path(*parts)


def _read_concept_labels(path: Path, num_images: int) -> np.ndarray:
    lines = _read_nonempty_lines(path)
    if len(lines) != num_images:
        raise DataLayoutError(
            f"{path}: {len(lines)} lines, expected one 0/1 line for each of the {num_images} listed images"
        )
    for number, line in enumerate(lines, start=1):
        if line not in ("0", "1"):
            raise DataLayoutError(f"{path}, line {number}: {line!r}; expected 0 or 1")
    return np.array([line == "1" for line in lines], dtype=np.float32)  # [N]


def read_nuswide(root, split: str = "Test", allow_missing: bool = False) -> MultiLabelImageSet:
    root = Path(root)
    concepts = _read_nonempty_lines(root / "Concepts81.txt")
    listed = _read_nonempty_lines(root / "ImageList" / f"{split}Imagelist.txt")
    labels = np.stack(
        [
            _read_concept_labels(root / "TrainTestLabels" / f"Labels_{concept}_{split}.txt", len(listed))
            for concept in concepts
        ],
        axis=1,
    )  # [N, C]
    return MultiLabelImageSet.from_listed(
        name=f"nuswide-{split.lower()}",
        classnames=concepts,
        image_paths=[str(root / "Flickr" / _relative_image_path(line)) for line in listed],
        labels=labels,
        allow_missing=allow_missing,
    )
