from pathlib import Path

import pytest
from yacs.config import CfgNode as CN

import datasets  # noqa: F401  (registers the plug-ins)
from hiprompt.config import get_cfg_default
from hiprompt.data import MissingImagesError, TestTransform
from hiprompt.registry import DATASET_REGISTRY
from hiprompt.training.build import build_test_transform

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _cfg(**dataset) -> CN:
    cfg = CN()
    cfg.DATASET = CN()
    cfg.DATASET.NAME = ""
    cfg.DATASET.ROOT = ""
    cfg.DATASET.TEST_SPLIT = "val2014"
    cfg.DATASET.TRAIN_SPLIT = ""  # set by the COCO YAMLs (DualCoOp's training images)
    cfg.DATASET.KEEP_UNANNOTATED = True
    cfg.DATASET.VOC_DIFFICULT = "negative"
    cfg.DATASET.ALLOW_MISSING_IMAGES = False
    cfg.DATASET.CSV = ""
    cfg.DATASET.CLASSNAMES_FILE = ""
    cfg.INPUT = CN()
    cfg.INPUT.SIZE = (224, 224)
    cfg.INPUT.TEST_RESIZE = "square"
    cfg.INPUT.PIXEL_MEAN = [0.48145466, 0.4578275, 0.40821073]
    cfg.INPUT.PIXEL_STD = [0.26862954, 0.26130258, 0.27577711]
    for key, value in dataset.items():
        cfg.DATASET[key] = value
    return cfg


def _build(cfg):
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


@pytest.mark.parametrize("name", ["coco", "coco2017", "voc2007", "nuswide", "custom"])
def test_dataset_yaml_merges_and_names_a_registered_set(name):
    cfg = get_cfg_default()  # the full schema: a data-set YAML may also set method keys (NUS-WIDE's TAU_IMAGE)
    cfg.merge_from_file(str(REPO / "configs" / "datasets" / f"{name}.yaml"))
    assert cfg.DATASET.NAME in DATASET_REGISTRY


@pytest.mark.skipif(not (SHARED_DATA / "coco-mini").is_dir(), reason="shared/data/coco-mini not present")
def test_coco_plugin_maps_the_config():
    cfg = _cfg(NAME="COCO", ROOT=str(SHARED_DATA / "coco-mini"))
    cfg.merge_from_file(str(REPO / "configs" / "datasets" / "coco2017.yaml"))
    dataset = _build(cfg)
    assert len(dataset.test) == 128 and dataset.num_classes == 80
    assert dataset.lab2cname[0] == "person" and dataset.classnames == dataset.test.classnames


@pytest.mark.skipif(not (SHARED_DATA / "voc2007-mini").is_dir(), reason="shared/data/voc2007-mini not present")
def test_voc_plugin_maps_the_config():
    cfg = _cfg(NAME="VOC2007", ROOT=str(SHARED_DATA / "voc2007-mini"), TEST_SPLIT="test")
    with pytest.raises(MissingImagesError, match="ALLOW_MISSING_IMAGES"):
        _build(cfg)
    cfg.DATASET.ALLOW_MISSING_IMAGES = True
    cfg.DATASET.VOC_DIFFICULT = "ignore"
    dataset = _build(cfg)
    assert len(dataset.test) == 5 and dataset.num_classes == 20 and dataset.test.ignore is not None


def test_nuswide_plugin_maps_the_config(tmp_path):
    (tmp_path / "Concepts81.txt").write_text("sky\n")
    (tmp_path / "ImageList").mkdir()
    (tmp_path / "ImageList" / "TestImagelist.txt").write_text("a\\1.jpg\n")
    (tmp_path / "TrainTestLabels").mkdir()
    (tmp_path / "TrainTestLabels" / "Labels_sky_Test.txt").write_text("1\n")
    (tmp_path / "Flickr" / "a").mkdir(parents=True)
    (tmp_path / "Flickr" / "a" / "1.jpg").write_bytes(b"x")
    dataset = _build(_cfg(NAME="NUSWIDE", ROOT=str(tmp_path), TEST_SPLIT="Test"))
    assert dataset.lab2cname == {0: "sky"} and dataset.test.labels.tolist() == [[1.0]]


def test_custom_plugin_resolves_paths_under_root(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "set.csv").write_text("image,labels\na.jpg,cat\n")
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    cfg = _cfg(NAME="CustomMultiLabel", ROOT=str(tmp_path), CSV="set.csv", CLASSNAMES_FILE="classes.txt")
    dataset = _build(cfg)
    assert dataset.classnames == ["dog", "cat"] and dataset.test.labels.tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="DATASET.CSV"):
        _build(_cfg(NAME="CustomMultiLabel"))


def test_test_transform_from_config():
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (160, 96)
    cfg.INPUT.TEST_RESIZE = "resize_crop"
    spec = build_test_transform(cfg)
    assert spec.size == (160, 96) and spec.mode == "resize_crop" and spec.interpolation == "bicubic"
    assert spec.mean == tuple(cfg.INPUT.PIXEL_MEAN) and "resize_crop-160x96" in spec.key
