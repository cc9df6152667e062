"""The on-disk cache of CLIP image features (global and dense) for one image set.

A cache entry is the folder `<cache_dir>/<key>/`:
    global.npy     float32 [N, D]     raw (unnormalised) global features
    dense.npy      float16 [N, L, D]  raw dense features, written through a memmap
    progress.json  while extracting: rows done so far and the unreadable ones (resume point)
    meta.json      written last, atomically: its presence marks the entry complete

The key hashes the CLIP image identity (backbone, weights, dense variant), the transform key, and the image set:
its name, its ordered absolute image paths and each file's size. Sizes catch an image
replaced by another file (a re-download, a re-encode) at the cost of one `stat` per image;
modification times are left out on purpose, as copying a data set changes them without
changing a pixel.
"""

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from hiprompt.fileio import atomic_write_json
from hiprompt.paths import cache_root

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class ImageSource(Protocol):
    """What the cache encodes (hiprompt.data.image_dataset.ImageFeatureDataset is one)."""

    name: str  # the image set's name
    image_paths: Sequence[str]  # in order
    transform_key: str  # everything that changes the pixels the model sees

    def __len__(self) -> int: ...

    def __getitem__(self, index: int):
        """(image [3, H, W], index, ok): ok False for an unreadable image (a zero image then)."""


@dataclass
class ImageFeatures:
    global_feats: np.ndarray  # [N, D] float32
    dense_feats: np.ndarray  # [N, L, D] float16, read-only memmap
    ok: np.ndarray  # [N] bool, False for unreadable images (zero input; leave out of metrics)
    corrupt_paths: list
    key: str
    folder: Path


def feature_cache_key(clip_identity: str, images: ImageSource) -> str:
    digest = hashlib.sha256()
    header = {"version": FORMAT_VERSION, "clip": clip_identity, "transform": images.transform_key,
              "set": images.name}
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for path in images.image_paths:
        size = os.path.getsize(path) if os.path.exists(path) else -1
        digest.update(f"\n{path}\t{size}".encode("utf-8"))
    return digest.hexdigest()[:32]


def _read_json(path: Path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None


def _load_complete(folder: Path, key: str, images: ImageSource):
    """The finished entry in `folder`, or None when there is none (or it does not check out)."""
    meta = _read_json(folder / "meta.json")
    if meta is None:
        return None
    num_images = len(images)
    try:
        global_feats = np.load(folder / "global.npy")  # [N, D]
        dense_feats = np.load(folder / "dense.npy", mmap_mode="r")  # [N, L, D]
    except (OSError, ValueError) as err:
        logger.warning("feature cache %s is unreadable (%s); extracting again", folder, err)
        return None
    dim, length = meta.get("dim"), meta.get("dense_length")
    if (
        meta.get("key") != key
        or global_feats.shape != (num_images, dim)
        or dense_feats.shape != (num_images, length, dim)
    ):
        logger.warning("feature cache %s does not match its meta.json; extracting again", folder)
        return None
    ok = np.ones(num_images, dtype=bool)
    ok[meta["corrupt"]] = False
    return ImageFeatures(
        global_feats=global_feats,
        dense_feats=dense_feats,
        ok=ok,
        corrupt_paths=[images.image_paths[i] for i in meta["corrupt"]],
        key=key,
        folder=folder,
    )


def _resume_point(folder: Path, key: str, num_images: int):
    """(rows done, corrupt indices, global memmap, dense memmap) of an interrupted run, or None."""
    progress = _read_json(folder / "progress.json")
    if progress is None or progress.get("key") != key:
        return None
    try:
        global_mm = np.load(folder / "global.npy", mmap_mode="r+")
        dense_mm = np.load(folder / "dense.npy", mmap_mode="r+")
    except (OSError, ValueError):
        return None
    if global_mm.shape[0] != num_images or dense_mm.shape[0] != num_images:
        return None
    return progress["done"], list(progress["corrupt"]), global_mm, dense_mm


def _extract(clip, images: ImageSource, folder: Path, key: str, batch_size, num_workers, device, progress):
    num_images = len(images)
    folder.mkdir(parents=True, exist_ok=True)
    resumed = _resume_point(folder, key, num_images)
    start, corrupt, global_mm, dense_mm = resumed if resumed else (0, [], None, None)
    if start:
        logger.info("resuming feature extraction at image %d of %d (%s)", start, num_images, folder)

    loader = DataLoader(Subset(images, range(start, num_images)), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers)
    with tqdm(total=num_images, initial=start, disable=not progress, desc=f"image features {images.name}") as bar:
        for batch, indices, ok in loader:
            with torch.inference_mode():
                global_feats, dense_feats = clip.encode_image_features(batch.to(device))
            global_feats = global_feats.float().cpu().numpy()  # [B, D]
            dense_feats = dense_feats.float().cpu().numpy().astype(np.float16)  # [B, L, D]
            if not np.isfinite(dense_feats).all():
                raise OverflowError("dense image features overflow float16; the cache cannot store them")
            if global_mm is None:
                global_mm = np.lib.format.open_memmap(
                    folder / "global.npy", mode="w+", dtype=np.float32, shape=(num_images, global_feats.shape[1])
                )
                dense_mm = np.lib.format.open_memmap(
                    folder / "dense.npy", mode="w+", dtype=np.float16, shape=(num_images, *dense_feats.shape[1:])
                )
            low, high = int(indices[0]), int(indices[-1]) + 1
            global_mm[low:high] = global_feats
            dense_mm[low:high] = dense_feats
            corrupt.extend(int(i) for i in indices[~ok])
            global_mm.flush()
            dense_mm.flush()
            atomic_write_json(folder / "progress.json", {"key": key, "done": high, "corrupt": corrupt})
            bar.update(high - low)

    atomic_write_json(
        folder / "meta.json",
        {
            "version": FORMAT_VERSION,
            "key": key,
            "clip": clip.image_identity(),
            "image_set": images.name,
            "num_images": num_images,
            "dim": int(global_mm.shape[1]),
            "dense_length": int(dense_mm.shape[1]),
            "corrupt": sorted(corrupt),
        },
    )
    os.unlink(folder / "progress.json")


def image_features(
    clip,
    images: ImageSource,
    cache_dir=None,
    batch_size: int = 64,
    num_workers: int = 0,
    device="cpu",
    progress: bool = True,
) -> ImageFeatures:
    """The global and dense features of every image of `images`, from the cache when there.

    `clip` needs `image_identity() -> str` and `encode_image_features(images [B, 3, H, W]) ->
    (global [B, D], dense [B, L, D])`. `cache_dir` defaults to `<cache root>/image_features`.
    An interrupted extraction resumes from its last finished batch. Unreadable images are
    encoded as zero inputs, marked False in `ok` and logged.
    """
    if len(images) == 0:
        raise ValueError(f"{images.name}: no images to encode")
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "image_features"
    key = feature_cache_key(clip.image_identity(), images)
    folder = cache_dir / key
    features = _load_complete(folder, key, images)
    if features is None:
        (folder / "meta.json").unlink(missing_ok=True)
        _extract(clip, images, folder, key, batch_size, num_workers, device, progress)
        features = _load_complete(folder, key, images)
    if features.corrupt_paths:
        logger.warning(
            "%s: %d unreadable images are left out of the evaluation, e.g. %s",
            images.name, len(features.corrupt_paths), features.corrupt_paths[:5],
        )
    return features
