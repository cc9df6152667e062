import os

from hiprompt.data.coco import read_coco
from hiprompt.data.test_set import ImageTestSet
from hiprompt.registry import DATASET_REGISTRY
from hiprompt.training.protocol import keep_unannotated


@DATASET_REGISTRY.register()
class COCO(ImageTestSet):
    """MS-COCO: DATASET.ROOT holds annotations/instances_<split>.json and <split>/."""

    def __init__(self, cfg):
        super().__init__(
            read_coco(
                os.path.expanduser(cfg.DATASET.ROOT),
                split=cfg.DATASET.TEST_SPLIT,
                keep_unannotated=keep_unannotated(cfg),  # DualCoOp's rule under TEST.PROTOCOL peer
                allow_missing=cfg.DATASET.ALLOW_MISSING_IMAGES,
            )
        )
