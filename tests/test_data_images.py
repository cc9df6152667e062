import numpy as np
import pytest
import torch
from PIL import Image

from hiprompt.data import ImageFeatureDataset, MultiLabelImageSet, TestTransform
from hiprompt.data.transforms import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD


def _image_set(paths):
    return MultiLabelImageSet("toy", ["a"], [str(p) for p in paths], np.zeros((len(paths), 1)))


def _striped(path, width=200, height=100):
    """Left half red, right half blue: a crop loses the outer columns, a square resize keeps them."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2 :, 2] = 255
    Image.fromarray(pixels).save(path)


def test_square_keeps_the_whole_image_and_resize_crop_cuts(tmp_path):
    _striped(tmp_path / "wide.png", width=400, height=100)
    image = Image.open(tmp_path / "wide.png")
    square = TestTransform(size=(32, 32), mode="square", mean=(0, 0, 0), std=(1, 1, 1)).build()(image)
    crop = TestTransform(size=(32, 32), mode="resize_crop", mean=(0, 0, 0), std=(1, 1, 1)).build()(image)
    assert square.shape == crop.shape == (3, 32, 32)
    assert square[0, :, :16].mean() > 0.9 and square[2, :, 16:].mean() > 0.9  # both halves in view
    # the centre crop of a 4:1 image shows only the middle quarter
    assert crop[0, :, 0].mean() > 0.9 and crop[2, :, -1].mean() > 0.9
    assert abs(crop[0].mean() - 0.5) < 0.05


def test_default_transform_uses_clip_normalisation(tmp_path):
    Image.new("RGB", (50, 40), (0, 0, 0)).save(tmp_path / "black.png")
    spec = TestTransform()
    assert spec.mean == CLIP_PIXEL_MEAN and spec.std == CLIP_PIXEL_STD and spec.mode == "square"
    out = spec.build()(Image.open(tmp_path / "black.png").convert("L"))  # grey input becomes RGB
    expected = -torch.tensor(CLIP_PIXEL_MEAN) / torch.tensor(CLIP_PIXEL_STD)
    assert out.shape == (3, 224, 224)
    assert torch.allclose(out[:, 0, 0], expected, atol=1e-4)
    assert TestTransform(size=(224, 224), mode="resize_crop").key != spec.key


def test_bad_transform_settings_name_the_key():
    with pytest.raises(ValueError, match="INPUT.TEST_RESIZE='crop'"):
        TestTransform(mode="crop")
    with pytest.raises(ValueError, match="INPUT.SIZE"):
        TestTransform(size=(1, 2, 3))


def test_corrupt_images_are_reported_not_fatal(tmp_path, caplog):
    _striped(tmp_path / "good.jpg")
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8 this is not a jpeg" * 10)
    good = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    paths = [tmp_path / "good.jpg", tmp_path / "garbage.jpg", tmp_path / "truncated.jpg"]
    dataset = ImageFeatureDataset(_image_set(paths), TestTransform(size=(16, 16)).build())
    with caplog.at_level("WARNING"):
        items = [dataset[i] for i in range(3)]
    assert [index for _, index, _ in items] == [0, 1, 2]
    assert [ok for _, _, ok in items] == [True, False, False]
    assert all(image.shape == (3, 16, 16) for image, _, _ in items)
    assert items[0][0].abs().sum() > 0 and items[1][0].abs().sum() == 0 and items[2][0].abs().sum() == 0
    assert "garbage.jpg" in caplog.text and "truncated.jpg" in caplog.text

    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch[0].shape == (3, 3, 16, 16) and batch[2].tolist() == [True, False, False]
