import os

from hiprompt.data.nuswide import read_nuswide
from hiprompt.data.test_set import ImageTestSet
from hiprompt.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class NUSWIDE(ImageTestSet):
    """NUS-WIDE: DATASET.ROOT holds Concepts81.txt, ImageList/, TrainTestLabels/, Flickr/."""

    def __init__(self, cfg):
        super().__init__(
            read_nuswide(
                os.path.expanduser(cfg.DATASET.ROOT),
                split=cfg.DATASET.TEST_SPLIT,
                allow_missing=cfg.DATASET.ALLOW_MISSING_IMAGES,
            )
        )
