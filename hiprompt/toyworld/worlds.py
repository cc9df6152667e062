"""The toy worlds by name: `toy` (the default, fast CI world) and `toy80` (the harder one).
Importing this module registers each world's CLIP, with its shipped weights, by the name
`world.clip_config` (hiprompt.clip.named)."""

from hiprompt.clip.named import register_clip
from hiprompt.toyworld.model import weights_path
from hiprompt.toyworld.toy80 import TOY80
from hiprompt.toyworld.world import TOY, World

WORLDS = {world.name: world for world in (TOY, TOY80)}
for _world in WORLDS.values():
    register_clip(_world.clip_config, _world.clip_architecture, weights_path(_world))


def get_world(name: str) -> World:
    if name not in WORLDS:
        raise ValueError(f"unknown toy world {name!r}; expected one of {sorted(WORLDS)}")
    return WORLDS[name]
