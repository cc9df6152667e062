"""Multi-label image test sets: readers, the shared set type, transforms and the Dataset."""

from hiprompt.data.base import DataLayoutError, MissingImagesError, MultiLabelImageSet
from hiprompt.data.coco import read_coco
from hiprompt.data.custom import read_custom_csv
from hiprompt.data.image_dataset import ImageFeatureDataset
from hiprompt.data.nuswide import read_nuswide
from hiprompt.data.transforms import TestTransform
from hiprompt.data.voc import read_voc2007

__all__ = [
    "DataLayoutError",
    "ImageFeatureDataset",
    "MissingImagesError",
    "MultiLabelImageSet",
    "TestTransform",
    "read_coco",
    "read_custom_csv",
    "read_nuswide",
    "read_voc2007",
]
