"""The toy worlds' tables and their scene sampler.

A `World` holds the tables (classes, scenes, companions, sizes, clutter, caption style);
`TOY`, the default world, has twenty classes of drawn objects in five scenes. An image is
one scene holding distinct objects drawn from that scene's pool, so classes of one scene
co-occur and classes that share no scene never do. Some classes bring a companion along
most of the time. Every object has a colour, a size, a texture and a position. A world may
also let objects partly overlap (later ones drawn on top), scatter clutter marks that are
no class, and jitter the scene's background colour.

Sampling is seeded per image (`numpy.random.default_rng([seed, index])`), so image `index`
of a seed is the same whatever else is generated.
"""

from dataclasses import dataclass, field
from functools import cached_property

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
    actions: tuple = ()  # verb phrases of an object in the scene ("hangs high in the sky")


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
    SceneInfo("sky", (165, 200, 240), ("open", "high", "airy"), (
        "glows in the night sky", "hangs high in the sky", "floats across the sky", "shines above the hills")),
    SceneInfo("sea", (120, 170, 190), ("wet", "salty", "open"), (
        "drifts on the sea", "bobs on the waves", "rests by the shore", "moves through the water")),
    SceneInfo("kitchen", (225, 210, 180), ("indoor", "warm", "tidy"), (
        "sits on the kitchen table", "stands on the counter", "waits by the sink", "rests on the shelf")),
    SceneInfo("garden", (170, 210, 150), ("outdoor", "green", "sunny"), (
        "stands in the garden", "sits on the grass", "is seen in the yard", "rests by the path")),
    SceneInfo("playroom", (215, 200, 220), ("indoor", "bright", "playful"), (
        "lies on the playroom floor", "waits among the toys", "sits on the rug", "rests on the toy shelf")),
)
SCENE_INFO = {scene.name: scene for scene in SCENES}
SCENE_CLASSES = {scene.name: tuple(c.name for c in CLASSES if scene.name in c.scenes) for scene in SCENES}

# A drawn class brings its companion along with this probability (room permitting).
COMPANIONS = {"moon": ("star", 0.8), "fork": ("plate", 0.9), "boat": ("wave", 0.7), "house": ("tree", 0.6)}
OBJECT_COUNTS = (1, 2, 3, 4)
OBJECT_COUNT_WEIGHTS = (0.25, 0.35, 0.25, 0.15)
TYPICAL_SIZE_PROBABILITY = 0.6


@dataclass(frozen=True)
class CaptionStyle:
    """How captions are written, and how noisy they are.

    Each of size, colour and texture is stated with `attribute_probability`, the position
    with `position_probability`. Objects left out: with `omit_probability` > 0 each object
    is left out with that probability (at least one is kept); otherwise all objects are
    named with `all_objects_probability`, else a random non-empty subset. A class named in
    a caption is called by one of its synonyms with `synonym_probability` (when it has
    any); a stated attribute is replaced by a wrong value with `wrong_attribute_probability`.
    """

    attribute_probability: float = 0.5
    position_probability: float = 0.2
    all_objects_probability: float = 0.7
    omit_probability: float = 0.0
    synonym_probability: float = 0.0
    wrong_attribute_probability: float = 0.0


@dataclass(frozen=True, eq=False)
class World:
    """A world's tables: what can be drawn, where, how often, and how it is captioned."""

    name: str
    clip_config: str  # the name its CLIP is registered under (hiprompt.clip.named)
    clip_architecture: dict  # open_clip.model.CLIP(**clip_architecture)
    weights_file: str  # its pretrained CLIP, beside this module
    image_size: int
    classes: tuple  # ClassInfo
    scenes: tuple  # SceneInfo
    companions: dict  # class -> (companion, probability of bringing it along)
    shapes: dict  # class -> shape key of draw.SHAPES
    sizes: dict = field(default_factory=lambda: dict(SIZES))  # size word -> box side in pixels
    size_jitter: int = 2  # box side ± this many pixels
    object_counts: tuple = OBJECT_COUNTS
    object_count_weights: tuple = OBJECT_COUNT_WEIGHTS
    typical_size_probability: float = TYPICAL_SIZE_PROBABILITY
    max_overlap: float = 0.0  # share of an object's box that later objects may cover
    clutter_counts: tuple = (0,)  # marks that are no class, drawn under the objects
    clutter_weights: tuple = (1.0,)
    background_jitter: int = 0  # scene colour ± this much per channel
    synonyms: dict = field(default_factory=dict)  # class -> other words for it in captions
    caption_style: CaptionStyle = CaptionStyle()

    @cached_property
    def class_names(self) -> tuple:
        return tuple(info.name for info in self.classes)

    @cached_property
    def class_info(self) -> dict:
        return {info.name: info for info in self.classes}

    @cached_property
    def scene_info(self) -> dict:
        return {scene.name: scene for scene in self.scenes}

    @cached_property
    def scene_classes(self) -> dict:
        return {s.name: tuple(c.name for c in self.classes if s.name in c.scenes) for s in self.scenes}


TOY = World(
    name="toy", clip_config="toy", weights_file="toy_clip.pt", image_size=IMAGE_SIZE,
    clip_architecture=dict(
        embed_dim=64,
        vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=12, head_width=32),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=3),
    ),
    classes=CLASSES, scenes=SCENES, companions=COMPANIONS, shapes={name: name for name in CLASS_NAMES},
)


def never_together(world: World = TOY) -> set:
    """Pairs (a, b), a < b, of classes that share no scene and so never co-occur."""
    return {
        (a.name, b.name) if a.name < b.name else (b.name, a.name)
        for i, a in enumerate(world.classes)
        for b in world.classes[i + 1:]
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
class ClutterMark:
    """A mark that is no class: a scribbled line or an irregular blot."""

    kind: str  # "scribble" | "blot"
    colour: tuple  # RGB
    points: tuple  # ((x, y), ...) in pixels
    width: int  # line width of a scribble


@dataclass(frozen=True)
class SceneSample:
    """What one image shows: its scene, the objects placed in it and the clutter under them."""

    scene: str
    objects: tuple  # PlacedObject, in drawing order
    clutter: tuple = ()  # ClutterMark, drawn first
    background: tuple = None  # RGB; None: the scene's own colour
    class_order: tuple = field(default=CLASS_NAMES, repr=False, compare=False)

    @property
    def labels(self) -> tuple:
        """The classes present, in the world's class order."""
        present = {obj.name for obj in self.objects}
        return tuple(name for name in self.class_order if name in present)


def position_word(box, image_size: int = IMAGE_SIZE) -> str:
    """Where a box sits: its centre's larger offset from the image centre, or `middle`."""
    cx, cy = (box[0] + box[2]) / 2 - image_size / 2, (box[1] + box[3]) / 2 - image_size / 2
    if max(abs(cx), abs(cy)) < image_size / 8:
        return "middle"
    if abs(cx) >= abs(cy):
        return "left" if cx < 0 else "right"
    return "top" if cy < 0 else "bottom"


def _choose_classes(rng: np.random.Generator, scene: str, world: World) -> list:
    pool = list(world.scene_classes[scene])
    count = int(rng.choice(world.object_counts, p=world.object_count_weights))
    chosen = []
    while len(chosen) < count and pool:
        name = pool.pop(int(rng.integers(len(pool))))
        chosen.append(name)
        companion, probability = world.companions.get(name, (None, 0.0))
        if companion in pool and rng.random() < probability and len(chosen) < max(world.object_counts):
            pool.remove(companion)
            chosen.append(companion)
    return chosen


def _choose_size(rng: np.random.Generator, info: ClassInfo, world: World) -> str:
    if rng.random() < world.typical_size_probability:
        return info.size
    return str(rng.choice([size for size in world.sizes if size != info.size]))


def _intersection(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _area(box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _place(rng: np.random.Generator, side: int, boxes: list, covered: list, world: World, attempts: int = 40):
    """A box of `side` pixels inside the image that covers no earlier box beyond the
    world's `max_overlap` share of its area (counting what is already covered), or None."""
    for _ in range(attempts):
        x0, y0 = (int(v) for v in rng.integers(1, world.image_size - side, size=2))
        box = (x0, y0, x0 + side, y0 + side)
        if all(c + _intersection(box, b) <= world.max_overlap * _area(b) for b, c in zip(boxes, covered)):
            return box
    return None


def _clutter(rng: np.random.Generator, world: World) -> tuple:
    """Scribbles and blots in random colours (no class), anywhere in the image."""
    count = int(rng.choice(world.clutter_counts, p=world.clutter_weights))
    marks, size = [], world.image_size
    for _ in range(count):
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            points = rng.integers(0, size, size=(int(rng.integers(3, 6)), 2))
            marks.append(ClutterMark("scribble", colour, tuple(map(tuple, points.tolist())), int(rng.integers(1, 4))))
        else:
            centre = rng.integers(8, size - 8, size=2)
            corners = int(rng.integers(5, 8))
            angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
            radii = rng.uniform(2, 9, corners)
            points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
            marks.append(ClutterMark("blot", colour, tuple(map(tuple, points.round(1).tolist())), 0))
    return tuple(marks)


def sample_scene(seed: int, index: int, world: World = TOY) -> SceneSample:
    """Image `index` of the world drawn with `seed`: a scene, its placed objects and clutter.

    An object that finds no room (even at the small size) is left out, and later objects
    cover at most `max_overlap` of an earlier one's box, so the objects (and labels) are
    exactly what gets drawn.
    """
    rng = np.random.default_rng([seed, index])
    scene = world.scenes[int(rng.integers(len(world.scenes)))].name
    objects, boxes, covered = [], [], []
    for name in _choose_classes(rng, scene, world):
        info = world.class_info[name]
        size = _choose_size(rng, info, world)
        side = world.sizes[size] + int(rng.integers(-world.size_jitter, world.size_jitter + 1))
        box = _place(rng, side, boxes, covered, world)
        if box is None and size != "small":
            size, side = "small", world.sizes["small"]
            box = _place(rng, side, boxes, covered, world)
        if box is None:
            continue
        colour = info.colours[0] if rng.random() < 0.5 else str(rng.choice(info.colours))
        texture = str(rng.choice(info.textures))
        covered = [c + _intersection(box, b) for b, c in zip(boxes, covered)] + [0]
        boxes.append(box)
        objects.append(PlacedObject(name, colour, size, texture, box, position_word(box, world.image_size)))
    clutter = _clutter(rng, world) if max(world.clutter_counts) > 0 else ()
    background = None
    if world.background_jitter:
        base = np.asarray(world.scene_info[scene].background)
        jitter = rng.integers(-world.background_jitter, world.background_jitter + 1, size=3)
        background = tuple(int(v) for v in np.clip(base + jitter, 0, 255))
    return SceneSample(scene, tuple(objects), clutter, background, world.class_names)


def world_tables(world: World = TOY) -> dict:
    """A world's tables as plain data (for documentation and the oracle)."""
    tables = {
        "classes": {
            c.name: {
                "scenes": list(c.scenes), "colours": list(c.colours), "size": c.size,
                "textures": list(c.textures), "shape_words": list(c.shape_words),
            }
            for c in world.classes
        },
        "scenes": {s.name: list(world.scene_classes[s.name]) for s in world.scenes},
        "companions": {k: list(v) for k, v in world.companions.items()},
        "vocabulary": {
            "colours": list(COLOURS), "sizes": list(world.sizes), "textures": list(TEXTURES),
            "positions": list(POSITIONS),
        },
    }
    if world.synonyms:
        tables["synonyms"] = {k: list(v) for k, v in world.synonyms.items()}
    return tables
