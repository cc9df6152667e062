"""The toy world's tables and its scene sampler.

Twenty classes of drawn objects live in five scenes. An image is one scene holding 1-4
distinct objects drawn from that scene's pool, so classes of one scene co-occur and classes
that share no scene never do. Some classes bring a companion along most of the time
(`COMPANIONS`). Every object has a colour, a size, a texture and a position.

Sampling is seeded per image (`numpy.random.default_rng([seed, index])`), so image `index`
of a seed is the same whatever else is generated.
"""

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 64

COLOURS = {
    "red": (215, 40, 40),
    "orange": (240, 140, 20),
    "yellow": (235, 210, 30),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "purple": (130, 50, 170),
    "pink": (240, 120, 180),
    "brown": (120, 70, 30),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
    "gray": (130, 130, 130),
}
SIZES = {"small": 16, "medium": 22, "large": 28}  # object box side in pixels (± 2)
TEXTURES = ("solid", "striped", "dotted", "outlined")
POSITIONS = ("left", "right", "top", "bottom", "middle")


@dataclass(frozen=True)
class ClassInfo:
    """What the world knows about one class."""

    name: str
    scenes: tuple  # scene names the class appears in
    colours: tuple  # possible colours, the first is the most common
    size: str  # typical size
    textures: tuple  # possible textures
    shape_words: tuple  # how its shape is described


@dataclass(frozen=True)
class SceneInfo:
    name: str
    background: tuple  # RGB
    description: tuple  # words describing the scene


CLASSES = (
    ClassInfo("sun", ("sky",), ("yellow", "orange", "red"), "large", ("solid", "outlined"), ("round", "rayed", "bright")),
    ClassInfo("moon", ("sky",), ("white", "yellow", "gray"), "medium", ("solid", "dotted"), ("curved", "crescent", "thin")),
    ClassInfo("star", ("sky",), ("yellow", "white", "orange"), "small", ("solid", "outlined"), ("pointed", "five-pointed", "sharp")),
    ClassInfo("cloud", ("sky", "sea"), ("white", "gray"), "large", ("solid", "dotted"), ("puffy", "fluffy", "rounded")),
    ClassInfo("boat", ("sea",), ("red", "brown", "white"), "large", ("solid", "striped"), ("sailed", "hulled", "pointed")),
    ClassInfo("fish", ("sea",), ("orange", "blue", "red"), "medium", ("solid", "striped", "dotted"), ("oval", "finned", "tailed")),
    ClassInfo("wave", ("sea",), ("blue", "white"), "medium", ("solid", "outlined"), ("wavy", "curly", "rolling")),
    ClassInfo("anchor", ("sea",), ("black", "gray"), "medium", ("solid",), ("hooked", "heavy", "curved")),
    ClassInfo("cup", ("kitchen",), ("red", "blue", "white"), "small", ("solid", "striped", "dotted"), ("handled", "hollow", "upright")),
    ClassInfo("bottle", ("kitchen",), ("green", "brown", "blue"), "medium", ("solid", "striped"), ("tall", "narrow", "necked")),
    ClassInfo("fork", ("kitchen",), ("gray", "black"), "small", ("solid",), ("pronged", "thin", "long")),
    ClassInfo("plate", ("kitchen",), ("white", "blue"), "large", ("solid", "dotted", "outlined"), ("flat", "round", "wide")),
    ClassInfo("tree", ("garden",), ("green", "brown"), "large", ("solid", "dotted"), ("leafy", "tall", "trunked")),
    ClassInfo("flower", ("garden",), ("pink", "red", "purple", "yellow"), "small", ("solid", "dotted"), ("petaled", "blooming", "round")),
    ClassInfo("house", ("garden",), ("brown", "red", "orange"), "large", ("solid", "striped", "outlined"), ("roofed", "square", "boxy")),
    ClassInfo("fence", ("garden",), ("brown", "white"), "medium", ("solid", "striped"), ("slatted", "upright", "long")),
    ClassInfo("ball", ("garden", "playroom"), ("red", "blue", "green", "yellow"), "small", ("solid", "striped", "dotted"), ("round", "bouncy", "smooth")),
    ClassInfo("kite", ("playroom",), ("red", "purple", "orange"), "medium", ("solid", "striped"), ("diamond", "tailed", "light")),
    ClassInfo("drum", ("playroom",), ("red", "blue"), "medium", ("solid", "striped", "outlined"), ("cylindrical", "hollow", "loud")),
    ClassInfo("block", ("playroom",), ("green", "yellow", "blue", "red"), "small", ("solid", "striped", "dotted", "outlined"), ("square", "cubic", "boxy")),
)
CLASS_NAMES = tuple(info.name for info in CLASSES)
CLASS_INFO = {info.name: info for info in CLASSES}

SCENES = (
    SceneInfo("sky", (165, 200, 240), ("open", "high", "airy")),
    SceneInfo("sea", (120, 170, 190), ("wet", "salty", "open")),
    SceneInfo("kitchen", (225, 210, 180), ("indoor", "warm", "tidy")),
    SceneInfo("garden", (170, 210, 150), ("outdoor", "green", "sunny")),
    SceneInfo("playroom", (215, 200, 220), ("indoor", "bright", "playful")),
)
SCENE_INFO = {scene.name: scene for scene in SCENES}
SCENE_CLASSES = {scene.name: tuple(c.name for c in CLASSES if scene.name in c.scenes) for scene in SCENES}

# A drawn class brings its companion along with this probability (room permitting).
COMPANIONS = {"moon": ("star", 0.8), "fork": ("plate", 0.9), "boat": ("wave", 0.7), "house": ("tree", 0.6)}
OBJECT_COUNTS = (1, 2, 3, 4)
OBJECT_COUNT_WEIGHTS = (0.25, 0.35, 0.25, 0.15)
TYPICAL_SIZE_PROBABILITY = 0.6


def never_together() -> set:
    """Pairs (a, b), a < b, of classes that share no scene and so never co-occur."""
    return {
        (a.name, b.name) if a.name < b.name else (b.name, a.name)
        for i, a in enumerate(CLASSES)
        for b in CLASSES[i + 1:]
        if not set(a.scenes) & set(b.scenes)
    }


@dataclass(frozen=True)
class PlacedObject:
    name: str
    colour: str
    size: str
    texture: str
    box: tuple  # (x0, y0, x1, y1) in pixels
    position: str


@dataclass(frozen=True)
class SceneSample:
    """What one image shows: its scene and the objects placed in it."""

    scene: str
    objects: tuple  # PlacedObject, in drawing order

    @property
    def labels(self) -> tuple:
        """The classes present, in the world's class order."""
        present = {obj.name for obj in self.objects}
        return tuple(name for name in CLASS_NAMES if name in present)


def position_word(box) -> str:
    """Where a box sits: its centre's larger offset from the image centre, or `middle`."""
    cx, cy = (box[0] + box[2]) / 2 - IMAGE_SIZE / 2, (box[1] + box[3]) / 2 - IMAGE_SIZE / 2
    if max(abs(cx), abs(cy)) < IMAGE_SIZE / 8:
        return "middle"
    if abs(cx) >= abs(cy):
        return "left" if cx < 0 else "right"
    return "top" if cy < 0 else "bottom"


def _choose_classes(rng: np.random.Generator, scene: str) -> list:
    pool = list(SCENE_CLASSES[scene])
    count = int(rng.choice(OBJECT_COUNTS, p=OBJECT_COUNT_WEIGHTS))
    chosen = []
    while len(chosen) < count and pool:
        name = pool.pop(int(rng.integers(len(pool))))
        chosen.append(name)
        companion, probability = COMPANIONS.get(name, (None, 0.0))
        if companion in pool and rng.random() < probability and len(chosen) < max(OBJECT_COUNTS):
            pool.remove(companion)
            chosen.append(companion)
    return chosen


def _choose_size(rng: np.random.Generator, info: ClassInfo) -> str:
    if rng.random() < TYPICAL_SIZE_PROBABILITY:
        return info.size
    return str(rng.choice([size for size in SIZES if size != info.size]))


def _place(rng: np.random.Generator, side: int, boxes: list, attempts: int = 40):
    """A box of `side` pixels inside the image not overlapping `boxes`, or None."""
    for _ in range(attempts):
        x0, y0 = (int(v) for v in rng.integers(1, IMAGE_SIZE - side, size=2))
        box = (x0, y0, x0 + side, y0 + side)
        if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
            return box
    return None


def sample_scene(seed: int, index: int) -> SceneSample:
    """Image `index` of the world drawn with `seed`: a scene and its placed objects.

    An object that finds no free room (even at the small size) is left out, so the objects
    (and labels) are exactly what gets drawn.
    """
    rng = np.random.default_rng([seed, index])
    scene = SCENES[int(rng.integers(len(SCENES)))].name
    objects, boxes = [], []
    for name in _choose_classes(rng, scene):
        info = CLASS_INFO[name]
        size = _choose_size(rng, info)
        side = SIZES[size] + int(rng.integers(-2, 3))
        box = _place(rng, side, boxes)
        if box is None and size != "small":
            size, side = "small", SIZES["small"]
            box = _place(rng, side, boxes)
        if box is None:
            continue
        colour = info.colours[0] if rng.random() < 0.5 else str(rng.choice(info.colours))
        texture = str(rng.choice(info.textures))
        boxes.append(box)
        objects.append(PlacedObject(name, colour, size, texture, box, position_word(box)))
    return SceneSample(scene, tuple(objects))


def world_tables() -> dict:
    """The world's tables as plain data (for documentation and the oracle)."""
    return {
        "classes": {
            c.name: {
                "scenes": list(c.scenes), "colours": list(c.colours), "size": c.size,
                "textures": list(c.textures), "shape_words": list(c.shape_words),
            }
            for c in CLASSES
        },
        "scenes": {s.name: list(SCENE_CLASSES[s.name]) for s in SCENES},
        "companions": {k: list(v) for k, v in COMPANIONS.items()},
        "vocabulary": {
            "colours": list(COLOURS), "sizes": list(SIZES), "textures": list(TEXTURES),
            "positions": list(POSITIONS),
        },
    }
