"""A torch Dataset of a MultiLabelImageSet's images that survives unreadable files."""

import logging

import torch
from PIL import Image
from torch.utils.data import Dataset

from hiprompt.data.base import MultiLabelImageSet
from hiprompt.data.transforms import TestTransform

logger = logging.getLogger(__name__)

# What PIL raises for truncated, corrupt or non-image files.
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ImageFeatureDataset(Dataset):
    """Item i is `(image [3, H, W], i, ok)`.

    An image that cannot be read or decoded gives a zero tensor and `ok=False` (logged), so a
    run is not killed by one bad file; the caller reports those images and leaves them out of
    the metrics. It is the `ImageSource` the feature cache reads (hiprompt.cache.image_features).
    """

    @classmethod
    def for_test(cls, image_set: MultiLabelImageSet, transform: TestTransform) -> "ImageFeatureDataset":
        """The images through a test transform, keyed by it."""
        return cls(image_set, transform.build(), transform.key)

    def __init__(self, image_set: MultiLabelImageSet, transform, transform_key: str = ""):
        self.image_set = image_set
        self.transform = transform
        # what a feature cache keys these images by: the set's name, its files, and the
        # transform's key (everything that changes the pixels the model sees)
        self.name, self.image_paths, self.transform_key = image_set.name, image_set.image_paths, transform_key
        self._blank = None  # [3, H, W] zeros, the stand-in for an unreadable image

    def _placeholder(self) -> torch.Tensor:
        if self._blank is None:
            self._blank = torch.zeros_like(self.transform(Image.new("RGB", (64, 64))))
        return self._blank

    def __len__(self) -> int:
        return len(self.image_set)

    def __getitem__(self, index: int):
        path = self.image_set.image_paths[index]
        try:
            with Image.open(path) as image:
                image.load()
                tensor = self.transform(image)  # [3, H, W]
        except _READ_ERRORS as err:
            logger.warning("unreadable image %s: %s", path, err)
            return self._placeholder(), index, False
        return tensor, index, True
