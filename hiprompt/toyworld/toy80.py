"""`toy80`, the harder toy world: eighty classes in ten scenes with overlapping pools.

Images are 128×128 (the toy CLIP's stride-32 image tower gives a 4×4 dense grid), hold
1-6 objects of very different sizes (12 / 22 / 38 px boxes) that may partly cover each
other, up to four clutter marks that are no class, and a jittered scene colour. Captions
leave objects out, use synonyms and state wrong attributes at set rates (`CAPTION_STYLE`).

The default world's twenty classes keep their shapes, palettes and sizes but now appear in
more scenes; sixty more classes are glyphs (an outline with a mark cut out of it, see
`draw.SHAPES`), whose palettes, typical sizes and textures are drawn once from a fixed
seed (`TABLE_SEED`) so the tables are data, not hand-tuned.
"""

import itertools
from dataclasses import replace

import numpy as np

from hiprompt.toyworld.world import CLASS_INFO, COLOURS, TEXTURES, CaptionStyle, ClassInfo, SceneInfo, World
from hiprompt.toyworld.world import SCENES as WORLD_SCENES

IMAGE_SIZE = 128
TABLE_SEED = 80

SCENES = WORLD_SCENES + (
    SceneInfo("street", (160, 160, 165), ("busy", "paved", "urban"), (
        "stands on the street", "waits by the road", "sits on the sidewalk", "is parked by the curb")),
    SceneInfo("office", (200, 200, 185), ("indoor", "quiet", "tidy"), (
        "sits on the office desk", "rests by the window", "lies on the shelf", "stands in the office")),
    SceneInfo("farm", (200, 190, 140), ("rural", "open", "dusty"), (
        "stands in the field", "rests by the barn", "is seen on the farm", "waits by the gate")),
    SceneInfo("forest", (110, 150, 110), ("wild", "shady", "green"), (
        "hides in the forest", "rests under the trees", "lies on the moss", "is seen by the trail")),
    SceneInfo("bathroom", (190, 215, 215), ("indoor", "clean", "wet"), (
        "sits by the bathroom sink", "hangs on the wall", "rests on the tiles", "stands by the tub")),
)

# The default world's classes, now seen in more scenes.
DEFAULT_CLASS_SCENES = {
    "sun": ("sky", "farm"), "moon": ("sky",), "star": ("sky", "playroom"),
    "cloud": ("sky", "sea", "farm"), "boat": ("sea",), "fish": ("sea", "kitchen"), "wave": ("sea",),
    "anchor": ("sea",), "cup": ("kitchen", "office"), "bottle": ("kitchen", "bathroom", "street"),
    "fork": ("kitchen",), "plate": ("kitchen",), "tree": ("garden", "forest", "street", "farm"),
    "flower": ("garden", "forest"), "house": ("garden", "street", "farm"), "fence": ("garden", "farm"),
    "ball": ("garden", "playroom"), "kite": ("playroom", "sky"), "drum": ("playroom",), "block": ("playroom",),
}
# Sixty glyph classes: name -> scenes.
GLYPH_CLASS_SCENES = {
    "bird": ("sky", "garden", "forest"), "plane": ("sky",), "balloon": ("sky", "playroom"), "rocket": ("sky", "playroom"),
    "shell": ("sea",), "crab": ("sea",), "buoy": ("sea",), "net": ("sea",),
    "pan": ("kitchen",), "spoon": ("kitchen",), "knife": ("kitchen",), "bowl": ("kitchen",), "kettle": ("kitchen",),
    "egg": ("kitchen", "farm"),
    "book": ("office", "playroom"), "pen": ("office",), "clock": ("office", "kitchen"), "lamp": ("office", "street"),
    "phone": ("office",), "chair": ("office", "kitchen"), "desk": ("office",), "paper": ("office",),
    "car": ("street",), "bus": ("street",), "sign": ("street",), "bench": ("street", "garden"), "bike": ("street",),
    "cone": ("street",), "truck": ("street", "farm"),
    "cow": ("farm",), "barn": ("farm",), "hay": ("farm",), "tractor": ("farm",), "sheep": ("farm",), "pig": ("farm",),
    "rock": ("forest", "sea"), "leaf": ("forest", "garden"), "mushroom": ("forest",), "log": ("forest",),
    "deer": ("forest",), "owl": ("forest",), "bush": ("forest", "garden"),
    "towel": ("bathroom",), "soap": ("bathroom",), "brush": ("bathroom",), "mirror": ("bathroom", "office"),
    "tub": ("bathroom",), "comb": ("bathroom",),
    "doll": ("playroom",), "robot": ("playroom",), "puzzle": ("playroom",), "train": ("playroom", "street"),
    "bag": ("street", "office"), "key": ("office", "street"), "hat": ("street", "playroom"),
    "shoe": ("street", "playroom", "bathroom"), "umbrella": ("street", "sea"), "bell": ("playroom", "farm"),
    "box": ("office", "playroom", "kitchen"), "candle": ("kitchen", "bathroom"),
}
OUTLINE_WORDS = {
    "circle": ("round", "circular"), "square": ("square", "boxy"), "triangle": ("triangular", "pointed"),
    "diamond": ("diamond", "angular"), "pentagon": ("five-sided", "angular"), "hexagon": ("six-sided", "angular"),
    "plus": ("crossed", "armed"), "ring": ("hollow", "round"), "pillar": ("tall", "narrow"),
    "slab": ("wide", "flat"), "arrow": ("arrowed", "pointed"), "trapezoid": ("sloped", "wide"),
    "bowtie": ("pinched", "winged"),
}
MARK_WORDS = {
    "plain": "plain", "holed": "holed", "slotted": "slotted", "spotted": "spotted", "notched": "notched",
    "barred": "barred",
}
# Glyphs left out: a plain circle or square would look like `ball` or `block`; the others'
# mark falls (almost) outside the outline, so they would look like the plain glyph.
EXCLUDED_GLYPHS = {
    ("circle", "plain"), ("square", "plain"), ("ring", "holed"), ("ring", "spotted"), ("bowtie", "notched"),
    ("bowtie", "barred"), ("bowtie", "holed"), ("bowtie", "slotted"), ("arrow", "notched"), ("slab", "notched"),
}

SYNONYMS = {
    "cup": ("mug",), "bottle": ("flask",), "boat": ("ship",), "fish": ("trout",), "house": ("home",),
    "ball": ("sphere",), "block": ("cube",), "tree": ("oak",), "flower": ("blossom",), "plate": ("dish",),
    "star": ("twinkle",), "wave": ("surf",), "drum": ("tom",), "rock": ("stone",),
    "car": ("auto",), "bus": ("coach",), "bike": ("bicycle",), "truck": ("lorry",), "phone": ("telephone",),
    "pen": ("marker",), "book": ("novel",), "chair": ("seat",), "desk": ("table",), "lamp": ("light",),
    "bag": ("purse",), "hat": ("cap",), "shoe": ("boot",), "bird": ("sparrow",), "plane": ("jet",),
    "cow": ("cattle",), "pig": ("hog",), "sheep": ("lamb",), "deer": ("stag",), "log": ("timber",),
    "towel": ("cloth",), "tub": ("bath",), "robot": ("android",), "doll": ("puppet",), "kettle": ("teapot",),
}

CAPTION_STYLE = CaptionStyle(
    attribute_probability=0.5, position_probability=0.2, omit_probability=0.25,
    synonym_probability=0.3, wrong_attribute_probability=0.15,
)
COMPANIONS = {
    "moon": ("star", 0.6), "fork": ("plate", 0.6), "boat": ("wave", 0.5), "house": ("tree", 0.5),
    "cow": ("barn", 0.5), "pen": ("paper", 0.6), "desk": ("chair", 0.6), "soap": ("towel", 0.5),
    "car": ("sign", 0.4), "owl": ("tree", 0.5),
}


def _glyph_classes() -> tuple:
    """The sixty glyph classes, their outline/mark and attributes drawn from `TABLE_SEED`."""
    rng = np.random.default_rng(TABLE_SEED)
    glyphs = [g for g in itertools.product(OUTLINE_WORDS, MARK_WORDS) if g not in EXCLUDED_GLYPHS]
    order = rng.permutation(len(glyphs))
    classes, shapes = [], {}
    colour_names = list(COLOURS)
    for (name, scenes), pick in zip(GLYPH_CLASS_SCENES.items(), order):
        outline, mark = glyphs[pick]
        colours = tuple(str(c) for c in rng.choice(colour_names, size=int(rng.integers(2, 5)), replace=False))
        textures = tuple(str(t) for t in rng.choice(TEXTURES, size=int(rng.integers(1, 4)), replace=False))
        size = str(rng.choice(("small", "medium", "large")))
        words = (*OUTLINE_WORDS[outline], MARK_WORDS[mark])
        classes.append(ClassInfo(name, scenes, colours, size, textures, words))
        shapes[name] = f"glyph-{outline}-{mark}"
    return tuple(classes), shapes


def _world() -> World:
    defaults = tuple(replace(CLASS_INFO[name], scenes=scenes) for name, scenes in DEFAULT_CLASS_SCENES.items())
    glyphs, glyph_shapes = _glyph_classes()
    return World(
        name="toy80", clip_config="toy80", weights_file="toy80_clip.pt", image_size=IMAGE_SIZE,
        # 128 px, so a 4x4 dense grid
        clip_architecture=dict(
            embed_dim=64,
            vision_cfg=dict(image_size=128, layers=[1, 1, 1, 1], width=8, head_width=32),
            text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=3),
        ),
        classes=defaults + glyphs, scenes=SCENES, companions=COMPANIONS,
        shapes={**{name: name for name in DEFAULT_CLASS_SCENES}, **glyph_shapes},
        sizes={"small": 12, "medium": 22, "large": 38}, size_jitter=3,
        object_counts=(1, 2, 3, 4, 5, 6), object_count_weights=(0.2, 0.25, 0.2, 0.15, 0.1, 0.1),
        typical_size_probability=0.5, max_overlap=0.3,
        clutter_counts=(0, 1, 2, 3, 4), clutter_weights=(0.2, 0.2, 0.2, 0.2, 0.2),
        background_jitter=25, synonyms=SYNONYMS, caption_style=CAPTION_STYLE,
    )


TOY80 = _world()
