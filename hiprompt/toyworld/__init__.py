"""Small aligned worlds for demonstrating the method on CPU.

Drawn objects in scenes (`world`, `draw`; the worlds by name in `worlds`: `toy`, the default,
and the harder `toy80`), their captions (`captions`), a toy CLIP of RN50's
architecture family pretrained on them (`model`, `pretrain`), an oracle knowledge back-end
that answers from the world's tables (`oracle`), a held-out dataset writer (`generate`) and
a zero-shot check (`zeroshot`). See docs/toyworld.md.
"""

from hiprompt.toyworld.captions import caption, caption_for
from hiprompt.toyworld.draw import make_image, render
from hiprompt.toyworld.model import images_to_tensor, load_toy_clip
from hiprompt.toyworld.oracle import ToyOracleBackend
from hiprompt.toyworld.world import CLASS_INFO, CLASS_NAMES, SCENE_CLASSES, TOY, World, sample_scene, world_tables
from hiprompt.toyworld.worlds import WORLDS, get_world

__all__ = [
    "CLASS_INFO", "CLASS_NAMES", "SCENE_CLASSES", "ToyOracleBackend", "caption", "caption_for",
    "TOY", "WORLDS", "World", "get_world", "images_to_tensor", "load_toy_clip", "make_image", "render",
    "sample_scene", "world_tables",
]
