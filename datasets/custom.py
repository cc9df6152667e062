import os

from hiprompt.data.custom import read_custom_csv
from hiprompt.data.test_set import ImageTestSet
from hiprompt.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class CustomMultiLabel(ImageTestSet):
    """A CSV of `image,labels` (DATASET.CSV; format in hiprompt/data/custom.py), with an
    optional class list (DATASET.CLASSNAMES_FILE). Relative paths are under DATASET.ROOT."""

    def __init__(self, cfg):
        if not cfg.DATASET.CSV:
            raise ValueError("CustomMultiLabel needs DATASET.CSV (a CSV of `image,labels`)")
        root = os.path.expanduser(cfg.DATASET.ROOT)
        classnames_file = cfg.DATASET.CLASSNAMES_FILE
        super().__init__(
            read_custom_csv(
                os.path.join(root, os.path.expanduser(cfg.DATASET.CSV)),
                classnames_file=os.path.join(root, os.path.expanduser(classnames_file)) if classnames_file else None,
                allow_missing=cfg.DATASET.ALLOW_MISSING_IMAGES,
            )
        )
