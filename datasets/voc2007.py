import os

from hiprompt.data.test_set import ImageTestSet
from hiprompt.data.voc import read_voc2007
from hiprompt.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class VOC2007(ImageTestSet):
    """PASCAL VOC 2007: DATASET.ROOT holds VOCdevkit/VOC2007/."""

    def __init__(self, cfg):
        super().__init__(
            read_voc2007(
                os.path.join(os.path.expanduser(cfg.DATASET.ROOT), "VOCdevkit", "VOC2007"),
                split=cfg.DATASET.TEST_SPLIT,
                difficult=cfg.DATASET.VOC_DIFFICULT,
                allow_missing=cfg.DATASET.ALLOW_MISSING_IMAGES,
            )
        )
