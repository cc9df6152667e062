"""Frozen description features, computed once per backbone and corpus and kept on disk.

Files under `<cache>/text/<key>/`: `eot.npy` [N, D] float32, `tokens.npy` [N, T, D] float16
(T = the longest description, padding trimmed), `mask.npy` [N, T] bool, and `meta.json`,
written last, which marks the entry complete.
"""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .fileio import atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class TextFeatures:
    eot: torch.Tensor  # [N, D] float32
    tokens: torch.Tensor  # [N, T, D] float16
    mask: torch.Tensor  # [N, T] bool


def _save_array(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def text_features(clip, texts, cache_dir, batch_size: int = 256, device="cpu", progress=True) -> TextFeatures:
    digest = hashlib.sha256(clip.identity().encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    folder = Path(cache_dir) / "text" / digest.hexdigest()[:24]
    if (folder / "meta.json").is_file():
        log.info("description features from cache %s", folder)
        return TextFeatures(
            torch.from_numpy(np.load(folder / "eot.npy")),
            torch.from_numpy(np.load(folder / "tokens.npy")),
            torch.from_numpy(np.load(folder / "mask.npy")),
        )
    tokens_all = clip.tokenize(texts)  # [N, L]
    length = int(clip.eot_positions(tokens_all).max()) + 1
    eots, per_token, masks = [], [], []
    clip.to(device)
    for start in tqdm(range(0, len(texts), batch_size), desc="encoding descriptions", disable=not progress):
        tokens = tokens_all[start:start + batch_size].to(device)
        eot, feats, mask = clip.encode_text(tokens)
        eots.append(eot.float().cpu())
        per_token.append(feats[:, :length].half().cpu())
        masks.append(mask[:, :length].cpu())
    result = TextFeatures(torch.cat(eots), torch.cat(per_token), torch.cat(masks))
    folder.mkdir(parents=True, exist_ok=True)
    _save_array(folder / "eot.npy", result.eot.numpy())
    _save_array(folder / "tokens.npy", result.tokens.numpy())
    _save_array(folder / "mask.npy", result.mask.numpy())
    atomic_write_json(folder / "meta.json", {"backbone": clip.identity(), "count": len(texts), "length": length})
    return result
