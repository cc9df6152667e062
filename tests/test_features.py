import json
import logging
import re

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


def test_a_cache_that_does_not_match_its_meta_is_rebuilt(tmp_path, caplog):
    image_set = _image_set(tmp_path, count=3, corrupt=())
    first = _extract(FakeClip(), image_set, tmp_path / "cache")
    np.save(first.folder / "global.npy", np.zeros((2, 3), dtype=np.float32))  # damaged
    clip = FakeClip()
    with caplog.at_level(logging.WARNING, logger="hiprompt.cache.image_features"):
        rebuilt = _extract(clip, image_set, tmp_path / "cache")
    assert clip.calls == 2 and rebuilt.global_feats.shape == (3, 3)
    assert _messages(caplog) == [
        f"feature cache {first.folder} does not match its meta.json; extracting again"]


# ---------------------------------------------------------------- what the cache writes, logs and shows
KEY_OF_FAKE = "fake-clip-v1"


class Synthetic:
    """An ImageSource of 1x1 images that never touches a file: image i is (i, w, 0), w = 1 when it was read in a
    DataLoader worker process and 0 in this one; the indices in `corrupt` come back with ok False."""

    def __init__(self, tmp_path, count, corrupt=(), name="synthetic"):
        self.name, self.transform_key, self.corrupt = name, "none", set(corrupt)
        self.image_paths = [str(tmp_path / "absent" / f"{i}.png") for i in range(count)]

    def __len__(self):
        return len(self.image_paths)

    def __getitem__(self, index):
        in_worker = torch.utils.data.get_worker_info() is not None
        return torch.tensor([float(index), float(in_worker), 0.0]).view(3, 1, 1), index, index not in self.corrupt


class RecordingClip(FakeClip):
    """FakeClip that notes each batch's size and device; on the meta device it answers zeros on the CPU."""

    def __init__(self, fail_after_calls=None, dense_scale=1.0):
        super().__init__(fail_after_calls)
        self.batches, self.devices, self.dense_scale = [], [], dense_scale

    def encode_image_features(self, images):
        self.batches.append(len(images))
        self.devices.append(images.device.type)
        if images.device.type == "meta":
            self.calls += 1
            return torch.zeros(len(images), 3), torch.zeros(len(images), 1, 3)
        global_feats, dense = super().encode_image_features(images)
        return global_feats, dense * self.dense_scale


def _messages(caplog):
    """What this module logged (the image reader logs each unreadable image besides)."""
    return [r.getMessage() for r in caplog.records if r.name == "hiprompt.cache.image_features"]


def _last_bar(err):
    """The last line tqdm drew (it redraws in place with carriage returns)."""
    return [part for part in err.replace("\n", "\r").split("\r") if part.strip()][-1]


def test_the_defaults_batch_64_in_this_process_under_the_cache_root_with_a_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HIPROMPT_CACHE", str(tmp_path / "root"))
    source, clip = Synthetic(tmp_path, 65), RecordingClip()
    features = image_features(clip, source)
    assert clip.batches == [64, 1] and clip.devices == ["cpu", "cpu"]
    key = feature_cache_key(KEY_OF_FAKE, source)
    assert features.key == key and features.folder == tmp_path / "root" / "image_features" / key
    assert (tmp_path / "root" / "image_features" / key / "meta.json").is_file()
    np.testing.assert_array_equal(features.global_feats[:, 0], np.arange(65))
    np.testing.assert_array_equal(features.global_feats[:, 1], np.zeros(65))  # not read in a worker
    assert re.match(r"image features synthetic: 100%\|[^|]*\| 65/65 \[", _last_bar(capsys.readouterr().err))


def test_workers_device_and_no_bar_are_passed_on(tmp_path, capsys):
    source = Synthetic(tmp_path, 3)
    features = image_features(RecordingClip(), source, tmp_path / "c", num_workers=1, progress=False)
    np.testing.assert_array_equal(features.global_feats[:, 1], np.ones(3))  # read in a worker process
    clip = RecordingClip()
    image_features(clip, Synthetic(tmp_path, 3, name="other"), tmp_path / "c", device="meta", progress=False)
    assert clip.devices == ["meta"]
    assert capsys.readouterr().err == ""


def test_a_set_of_one_image_is_encoded_and_an_empty_one_refused_by_name(tmp_path):
    features = _extract(FakeClip(), _image_set(tmp_path, count=1, corrupt=()), tmp_path / "cache")
    assert features.global_feats.shape == (1, 3)
    empty = Synthetic(tmp_path, 0, name="empty-set")
    with pytest.raises(ValueError) as raised:
        image_features(FakeClip(), empty, tmp_path / "cache", progress=False)
    assert str(raised.value) == "empty-set: no images to encode"


def test_the_entry_reads_back_as_documented(tmp_path):
    image_set = _image_set(tmp_path)
    spec = TestTransform(size=(SIZE, SIZE), mean=(0, 0, 0), std=(1, 1, 1))
    key = feature_cache_key(KEY_OF_FAKE, ImageFeatureDataset.for_test(image_set, spec))
    for features in (_extract(FakeClip(), image_set, tmp_path / "cache"), _extract(FakeClip(), image_set,
                                                                                   tmp_path / "cache")):
        assert features.key == key and features.folder == tmp_path / "cache" / key
        assert features.ok.dtype == np.bool_
        assert isinstance(features.dense_feats, np.memmap) and not features.dense_feats.flags.writeable
    meta = json.loads((tmp_path / "cache" / key / "meta.json").read_text(encoding="utf-8"))
    assert meta == {"version": 1, "key": key, "clip": KEY_OF_FAKE, "image_set": "toy", "num_images": 7, "dim": 3,
                    "dense_length": SIZE * SIZE, "corrupt": [3]}
    stored = np.load(tmp_path / "cache" / key / "global.npy")
    np.testing.assert_allclose(stored, _reference(image_set)[0], atol=1e-6)


def test_unreadable_images_are_logged_with_the_first_five(tmp_path, caplog):
    source = Synthetic(tmp_path, 8, corrupt=(0, 1, 2, 4, 5, 7))
    for _ in range(2):  # extracted, then read from the cache
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hiprompt.cache.image_features"):
            features = image_features(FakeClip(), source, tmp_path / "cache", progress=False)
        paths = source.image_paths
        assert features.corrupt_paths == [paths[i] for i in (0, 1, 2, 4, 5, 7)]
        assert _messages(caplog) == [
            f"synthetic: 6 unreadable images are left out of the evaluation, e.g. {[paths[i] for i in (0, 1, 2, 4, 5)]}"]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_dense_features_past_float16_are_refused(tmp_path):
    with pytest.raises(OverflowError) as raised:
        image_features(RecordingClip(dense_scale=1e5), Synthetic(tmp_path, 3), tmp_path / "cache", progress=False)
    assert str(raised.value) == "dense image features overflow float16; the cache cannot store them"


def test_a_resumed_extraction_is_logged_and_its_bar_counts_the_rows_done(tmp_path, caplog, capsys):
    image_set = _image_set(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _extract(FakeClip(fail_after_calls=2), image_set, tmp_path / "cache")
    folder = next((tmp_path / "cache").iterdir())
    spec = TestTransform(size=(SIZE, SIZE), mean=(0, 0, 0), std=(1, 1, 1))
    with caplog.at_level(logging.INFO, logger="hiprompt.cache.image_features"):
        image_features(FakeClip(), ImageFeatureDataset.for_test(image_set, spec), tmp_path / "cache", batch_size=2)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        f"resuming feature extraction at image 4 of 7 ({folder})"]
    err = capsys.readouterr().err
    assert re.match(r"image features toy: +57%\|[^|]*\| 4/7 \[", [p for p in err.split("\r") if p.strip()][0])
    assert re.match(r"image features toy: 100%\|[^|]*\| 7/7 \[", _last_bar(err))


@pytest.mark.parametrize("damaged", ["global.npy", "dense.npy"])
def test_a_partial_file_of_the_wrong_length_is_not_resumed(tmp_path, damaged):
    image_set = _image_set(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _extract(FakeClip(fail_after_calls=2), image_set, tmp_path / "cache")
    folder = next((tmp_path / "cache").iterdir())
    rows = np.load(folder / damaged)
    np.save(folder / damaged, rows[:6])  # one row short
    clip = FakeClip()
    features = _extract(clip, image_set, tmp_path / "cache")
    assert clip.calls == 4  # all over again
    global_ref, dense_ref = _reference(image_set)
    np.testing.assert_allclose(features.global_feats, global_ref, atol=1e-6)
    np.testing.assert_allclose(features.dense_feats, dense_ref, atol=1e-3)


def test_an_unreadable_entry_is_logged_and_its_interrupted_rebuild_never_reads_as_complete(tmp_path, caplog):
    image_set = _image_set(tmp_path)
    first = _extract(FakeClip(), image_set, tmp_path / "cache")
    (first.folder / "dense.npy").write_bytes(b"not an array")
    try:
        np.load(first.folder / "dense.npy", mmap_mode="r")
    except ValueError as err:
        reason = str(err)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hiprompt.cache.image_features"):
        with pytest.raises(KeyboardInterrupt):
            _extract(FakeClip(fail_after_calls=1), image_set, tmp_path / "cache")
    assert _messages(caplog) == [
        f"feature cache {first.folder} is unreadable ({reason}); extracting again"]
    assert not (first.folder / "meta.json").exists()  # the old entry's mark is gone with it
    clip = FakeClip()
    features = _extract(clip, image_set, tmp_path / "cache")
    assert clip.calls == 3  # the rest of the rebuild, not the half-written entry
    np.testing.assert_allclose(features.global_feats, _reference(image_set)[0], atol=1e-6)
    np.testing.assert_allclose(features.dense_feats, _reference(image_set)[1], atol=1e-3)
