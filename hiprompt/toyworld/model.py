"""The toy world's CLIP: the `toy` backbone config with the shipped weights, and image input."""

from pathlib import Path

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from ..clip.backbone import ClipBackbone, build_clip

CONFIG_NAME = "toy"
WEIGHTS_PATH = Path(__file__).with_name("toy_clip.pt")
RECORD_PATH = Path(__file__).with_name("toy_clip.json")


def load_toy_clip(path=WEIGHTS_PATH) -> ClipBackbone:
    """The frozen toy CLIP with the shipped (or given) weights."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"no toy CLIP weights at {path}: regenerate them with "
            "`python -m hiprompt.toyworld.pretrain --out hiprompt/toyworld/toy_clip.pt`"
        )
    return build_clip(CONFIG_NAME, str(path))


def images_to_tensor(images) -> torch.Tensor:
    """PIL RGB images of the world's size -> [B, 3, H, W] normalised as CLIP's input."""
    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images])
    mean = np.asarray(OPENAI_DATASET_MEAN, dtype=np.float32)
    std = np.asarray(OPENAI_DATASET_STD, dtype=np.float32)
    return torch.from_numpy((array - mean) / std).permute(0, 3, 1, 2).contiguous()  # [B, 3, H, W]
