"""The one in-memory form of a multi-label image test set, shared by every reader."""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

logger = logging.getLogger(__name__)

ALLOW_MISSING_OPTION = "DATASET.ALLOW_MISSING_IMAGES True"


class DataLayoutError(RuntimeError):
    """A data set file is absent or malformed; the message names the file and the layout."""


class MissingImagesError(DataLayoutError):
    """Images listed by a data set's annotation files are not on disk."""


@dataclass
class MultiLabelImageSet:
    """Images with multi-hot labels.

    `labels[i, c]` is 1.0 when image i shows class c, else 0.0. `ignore[i, c]` (optional) marks
    entries that no metric may count (VOC "difficult" under the `ignore` policy). `missing` lists
    the annotated images that were not on disk and are therefore not in `image_paths`.
    """

    name: str
    classnames: list
    image_paths: list  # absolute paths, [N]
    labels: np.ndarray  # [N, C] float32, 1 positive / 0 negative
    ignore: Optional[np.ndarray] = None  # [N, C] bool
    missing: list = field(default_factory=list)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.float32)
        expected = (len(self.image_paths), len(self.classnames))
        if self.labels.shape != expected:
            raise ValueError(
                f"{self.name}: labels have shape {self.labels.shape}, expected "
                f"[images, classes] = {list(expected)}"
            )
        if not np.isin(self.labels, (0.0, 1.0)).all():
            raise ValueError(f"{self.name}: labels must be 0 or 1")
        if self.ignore is not None:
            self.ignore = np.asarray(self.ignore, dtype=bool)
            if self.ignore.shape != expected:
                raise ValueError(
                    f"{self.name}: ignore mask has shape {self.ignore.shape}, expected {list(expected)}"
                )
        if len(set(self.classnames)) != len(self.classnames):
            raise ValueError(f"{self.name}: class names are not unique")

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    @property
    def lab2cname(self) -> dict:
        return dict(enumerate(self.classnames))

    @classmethod
    def from_listed(
        cls,
        name: str,
        classnames: list,
        image_paths: list,
        labels: np.ndarray,
        ignore: Optional[np.ndarray] = None,
        allow_missing: bool = False,
    ) -> "MultiLabelImageSet":
        """The set of the listed images, after the missing-image policy.

        Listed images absent from disk raise `MissingImagesError` unless `allow_missing`, in
        which case they are dropped (with a logged warning) and kept in `missing`.
        """
        paths = [os.path.abspath(p) for p in image_paths]
        present = np.array([os.path.isfile(p) for p in paths], dtype=bool)  # [N]
        missing = [p for p, ok in zip(paths, present) if not ok]
        if missing and not allow_missing:
            examples = "\n  ".join(missing[:3])
            raise MissingImagesError(
                f"{name}: {len(missing)} of {len(paths)} listed images are not on disk, e.g.\n"
                f"  {examples}\nPut the images in place, or set `{ALLOW_MISSING_OPTION}` to "
                "evaluate only the images present."
            )
        if missing:
            logger.warning(
                "%s: %d of %d listed images are not on disk; evaluating the %d present (%s)",
                name, len(missing), len(paths), int(present.sum()), ALLOW_MISSING_OPTION,
            )
        labels = np.asarray(labels, dtype=np.float32)
        return cls(
            name=name,
            classnames=list(classnames),
            image_paths=[p for p, ok in zip(paths, present) if ok],
            labels=labels[present],
            ignore=None if ignore is None else np.asarray(ignore, dtype=bool)[present],
            missing=missing,
        )
