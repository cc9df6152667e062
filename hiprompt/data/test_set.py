"""The attributes a registered image test set (a `datasets/` plug-in) exposes."""

from hiprompt.data.base import MultiLabelImageSet


class ImageTestSet:
    """`classnames`, `test` (the MultiLabelImageSet), `lab2cname` (index -> name), `num_classes`."""

    __test__ = False  # not a pytest test class

    def __init__(self, image_set: MultiLabelImageSet):
        self.test = image_set
        self.classnames = list(image_set.classnames)
        self.lab2cname = image_set.lab2cname
        self.num_classes = image_set.num_classes
