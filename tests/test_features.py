import json

import numpy as np
import pytest
import torch
from PIL import Image

from hiprompt.cache.image_features import feature_cache_key, image_features
from hiprompt.data import ImageFeatureDataset, MultiLabelImageSet, TestTransform

SIZE = 8


class FakeClip:
    """A deterministic stand-in for the CLIP wrapper: global = channel means, dense = pixels."""

    def __init__(self, fail_after_calls=None):
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def image_identity(self) -> str:
        return "fake-clip-v1"

    def encode_image_features(self, images):  # [B, 3, H, W]
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt  # an interrupted run
        self.calls += 1
        dense = images.flatten(2).transpose(1, 2)  # [B, H*W, 3]
        return images.mean(dim=(2, 3)), dense  # [B, 3], [B, L, 3]


def _image_set(tmp_path, count=7, corrupt=(3,)):
    paths = []
    for i in range(count):
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        if i in corrupt:
            path.write_bytes(b"not an image")
        else:
            Image.new("RGB", (10 + i, 12), (20 * i, 100, 200 - 20 * i)).save(path)
        paths.append(str(path))
    return MultiLabelImageSet("toy", ["x"], paths, np.zeros((count, 1)))


def _extract(clip, image_set, cache_dir, batch_size=2):
    spec = TestTransform(size=(SIZE, SIZE), mean=(0, 0, 0), std=(1, 1, 1))
    return image_features(clip, ImageFeatureDataset.for_test(image_set, spec), cache_dir, batch_size=batch_size,
                          progress=False)


def _reference(image_set):
    spec = TestTransform(size=(SIZE, SIZE), mean=(0, 0, 0), std=(1, 1, 1)).build()
    out = []
    for path in image_set.image_paths:
        try:
            out.append(spec(Image.open(path)))
        except OSError:
            out.append(torch.zeros(3, SIZE, SIZE))
    images = torch.stack(out)
    return images.mean(dim=(2, 3)).numpy(), images.flatten(2).transpose(1, 2).numpy()


def test_features_are_stored_and_reused_without_encoding(tmp_path):
    image_set = _image_set(tmp_path)
    clip = FakeClip()
    first = _extract(clip, image_set, tmp_path / "cache")
    assert clip.calls == 4  # 7 images in batches of 2
    global_ref, dense_ref = _reference(image_set)
    assert first.global_feats.dtype == np.float32 and first.global_feats.shape == (7, 3)
    assert first.dense_feats.dtype == np.float16 and first.dense_feats.shape == (7, SIZE * SIZE, 3)
    np.testing.assert_allclose(first.global_feats, global_ref, atol=1e-6)
    np.testing.assert_allclose(first.dense_feats, dense_ref, atol=1e-3)
    assert first.ok.tolist() == [True, True, True, False, True, True, True]
    assert first.corrupt_paths == [image_set.image_paths[3]]

    again = FakeClip()
    second = _extract(again, image_set, tmp_path / "cache")
    assert again.calls == 0
    np.testing.assert_array_equal(second.global_feats, first.global_feats)
    np.testing.assert_array_equal(second.dense_feats, first.dense_feats)
    assert second.ok.tolist() == first.ok.tolist() and second.corrupt_paths == first.corrupt_paths
    meta = json.loads((second.folder / "meta.json").read_text())
    assert meta["num_images"] == 7 and meta["corrupt"] == [3]
    assert not (second.folder / "progress.json").exists()


def test_interrupted_extraction_resumes_and_never_reads_as_complete(tmp_path):
    image_set = _image_set(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _extract(FakeClip(fail_after_calls=2), image_set, tmp_path / "cache")
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and not (folders[0] / "meta.json").exists()
    assert json.loads((folders[0] / "progress.json").read_text())["done"] == 4

    resumed = FakeClip()
    features = _extract(resumed, image_set, tmp_path / "cache")
    assert resumed.calls == 2  # only the batches after the first four images
    global_ref, _ = _reference(image_set)
    np.testing.assert_allclose(features.global_feats, global_ref, atol=1e-6)
    assert features.ok.tolist() == [True, True, True, False, True, True, True]


def test_cache_key_depends_on_model_transform_and_images(tmp_path):
    image_set = _image_set(tmp_path, count=2, corrupt=())

    def key(clip, images, transform_key):
        return feature_cache_key(clip, ImageFeatureDataset(images, None, transform_key))

    first = key("m", image_set, "t")
    assert first == key("m", image_set, "t")
    assert first != key("other", image_set, "t")
    assert first != key("m", image_set, "t2")
    reordered = MultiLabelImageSet("toy", ["x"], image_set.image_paths[::-1], np.zeros((2, 1)))
    assert first != key("m", reordered, "t")
    Image.new("RGB", (40, 40)).save(image_set.image_paths[0])  # the file was replaced
    assert first != key("m", image_set, "t")


def test_a_cache_that_does_not_match_its_meta_is_rebuilt(tmp_path):
    image_set = _image_set(tmp_path, count=3, corrupt=())
    first = _extract(FakeClip(), image_set, tmp_path / "cache")
    np.save(first.folder / "global.npy", np.zeros((2, 3), dtype=np.float32))  # damaged
    clip = FakeClip()
    rebuilt = _extract(clip, image_set, tmp_path / "cache")
    assert clip.calls == 2 and rebuilt.global_feats.shape == (3, 3)
