"""A toy world's CLIP: its backbone config with the shipped weights, and image input."""

from pathlib import Path

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from hiprompt.clip.backbone import ClipBackbone, build_clip
from hiprompt.toyworld.world import TOY, World


def weights_path(world: World = TOY) -> Path:
    """Where a world's pretrained CLIP is shipped."""
    return Path(__file__).with_name(world.weights_file)


def load_toy_clip(path=None, world: World = TOY) -> ClipBackbone:
    """The frozen CLIP of a toy world with the shipped (or given) weights."""
    path = weights_path(world) if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no toy CLIP weights at {path}: regenerate them with `python -m hiprompt.toyworld.pretrain "
            f"--world {world.name} --out hiprompt/toyworld/{world.weights_file}` (see docs/toyworld.md)"
        )
    return build_clip(world.clip_config, str(path))


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 RGB pixels [B, H, W, 3] -> [B, 3, H, W] normalised as CLIP's input."""
    array = pixels.astype(np.float32) / 255.0
    mean = np.asarray(OPENAI_DATASET_MEAN, dtype=np.float32)
    std = np.asarray(OPENAI_DATASET_STD, dtype=np.float32)
    return torch.from_numpy((array - mean) / std).permute(0, 3, 1, 2).contiguous()  # [B, 3, H, W]


def images_to_tensor(images) -> torch.Tensor:
    """PIL RGB images of the world's size -> [B, 3, H, W] normalised as CLIP's input."""
    return pixels_to_tensor(np.stack([np.asarray(image.convert("RGB")) for image in images]))
