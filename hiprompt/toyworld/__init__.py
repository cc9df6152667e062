"""Small aligned worlds for demonstrating the method on CPU.

Drawn objects in scenes (`world`, `draw`; the worlds by name in `worlds`: `toy`, the default,
and the harder `toy80`), their captions (`captions`), a toy CLIP of RN50's
architecture family pretrained on them (`model`, `pretrain`), an oracle knowledge back-end
that answers from the world's tables (`oracle`), a held-out dataset writer (`generate`) and
a zero-shot check (`zeroshot`). See docs/toyworld.md.
"""

from .captions import caption, caption_for
from .draw import make_image, render
from .model import images_to_tensor, load_toy_clip
from .oracle import ToyOracleBackend
from .world import CLASS_INFO, CLASS_NAMES, SCENE_CLASSES, TOY, World, sample_scene, world_tables
from .worlds import WORLDS, get_world

__all__ = [
    "CLASS_INFO", "CLASS_NAMES", "SCENE_CLASSES", "ToyOracleBackend", "caption", "caption_for",
    "TOY", "WORLDS", "World", "get_world", "images_to_tensor", "load_toy_clip", "make_image", "render",
    "sample_scene", "world_tables",
]
