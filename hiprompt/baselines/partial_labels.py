"""Partial labels (DualCoOp's setting): a seeded fraction of each image's labels hidden.

Entry (i, c) stays known with probability `portion` (DualCoOp's `rand < partial_portion`),
independently; a hidden entry becomes -1 and is left out of the loss. The mask is kept in the
run folder (`partial_labels.npz`, written atomically), never beside the data, with what made
it (portion, seed, the image list's digest); a rerun reuses it and refuses one made otherwise.
"""

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from hiprompt.fileio import atomic_write_bytes

MASK_FILE = "partial_labels.npz"


def image_list_digest(image_paths) -> str:
    return hashlib.sha256("\n".join(map(str, image_paths)).encode("utf-8")).hexdigest()


def known_mask(num_images: int, num_classes: int, portion: float, seed: int) -> np.ndarray:
    """[N, C] bool, True where a label is kept."""
    return np.random.default_rng(seed).random((num_images, num_classes)) < portion


def hide(labels: np.ndarray, known: np.ndarray) -> np.ndarray:
    """labels [N, C] 0/1 -> targets [N, C] float32 with -1 where hidden."""
    return np.where(known, labels, -1).astype(np.float32)


def run_mask(run_dir, labels: np.ndarray, image_paths, portion: float, seed: int) -> np.ndarray:
    """The run folder's mask for these images, made (and saved) on first use."""
    path = Path(run_dir) / MASK_FILE
    made_for = {"portion": float(portion), "seed": int(seed), "images": image_list_digest(image_paths),
                "shape": list(labels.shape)}
    if path.is_file():
        try:
            with np.load(path) as stored:
                recorded, known = json.loads(str(stored["made_for"])), stored["known"]
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: not a partial-label mask ({error}); delete it to make a new one") from None
        if recorded != made_for:
            differences = ", ".join(f"{k}: {recorded.get(k)!r} there, {v!r} now"
                                    for k, v in made_for.items() if recorded.get(k) != v)
            raise ValueError(f"{path} was made for other partial labels ({differences}); use another "
                             "--output-dir or delete the run folder")
        return known
    known = known_mask(*labels.shape, portion, seed)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, known=known, made_for=json.dumps(made_for))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return known
