"""The toy worlds by name: `toy` (the default, fast CI world) and `toy80` (the harder one)."""

from hiprompt.toyworld.toy80 import TOY80
from hiprompt.toyworld.world import TOY, World

WORLDS = {world.name: world for world in (TOY, TOY80)}


def get_world(name: str) -> World:
    if name not in WORLDS:
        raise ValueError(f"unknown toy world {name!r}; expected one of {sorted(WORLDS)}")
    return WORLDS[name]
