"""Rendering: each class is a shape family drawn as a mask, filled with a textured colour.

`SHAPES` holds the default world's twenty hand-drawn shapes (keyed by class name) and the
glyphs `glyph-<outline>-<mark>`: a plain outline (hexagon, arrow, ...) with a mark cut out
of it (a hole, a slot, two dots, a notch, a bar) or none, for worlds with more classes.
"""

import itertools
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from hiprompt.toyworld.world import COLOURS, TOY, SceneSample, World, sample_scene


class _Pen:
    """Draws on a mask in the unit square [-1, 1]^2 of a box."""

    def __init__(self, box, image_size: int):
        self.mask = Image.new("L", (image_size, image_size), 0)
        self.draw = ImageDraw.Draw(self.mask)
        self.cx, self.cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        self.r = (box[2] - box[0]) / 2

    def p(self, u, v):
        return (self.cx + u * self.r, self.cy + v * self.r)

    def rect(self, u0, v0, u1, v1, fill=255):
        self.draw.rectangle([self.p(u0, v0), self.p(u1, v1)], fill=fill)

    def ellipse(self, u0, v0, u1, v1, fill=255, outline=None, width=1):
        self.draw.ellipse([self.p(u0, v0), self.p(u1, v1)], fill=fill, outline=outline, width=width)

    def polygon(self, points, fill=255):
        self.draw.polygon([self.p(u, v) for u, v in points], fill=fill)

    def line(self, points, width, fill=255):
        self.draw.line([self.p(u, v) for u, v in points], fill=fill, width=max(1, round(width * self.r)))


def _sun(pen):
    pen.ellipse(-0.55, -0.55, 0.55, 0.55)
    for k in range(8):
        a = k * math.pi / 4
        pen.line([(0.7 * math.cos(a), 0.7 * math.sin(a)), (math.cos(a), math.sin(a))], 0.15)


def _moon(pen):
    pen.ellipse(-0.9, -0.9, 0.9, 0.9)
    pen.ellipse(-0.45, -1.0, 1.2, 0.75, fill=0)


def _star(pen):
    points = []
    for k in range(10):
        a = -math.pi / 2 + k * math.pi / 5
        radius = 1.0 if k % 2 == 0 else 0.4
        points.append((radius * math.cos(a), radius * math.sin(a)))
    pen.polygon(points)


def _cloud(pen):
    pen.ellipse(-1.0, -0.2, -0.1, 0.6)
    pen.ellipse(0.1, -0.2, 1.0, 0.6)
    pen.ellipse(-0.55, -0.7, 0.55, 0.4)
    pen.rect(-0.6, 0.1, 0.6, 0.6)


def _boat(pen):
    pen.polygon([(-1, 0.3), (1, 0.3), (0.6, 0.8), (-0.6, 0.8)])
    pen.line([(0, -0.9), (0, 0.3)], 0.12)
    pen.polygon([(0.1, -0.9), (0.1, 0.2), (0.75, 0.2)])


def _fish(pen):
    pen.ellipse(-1.0, -0.45, 0.45, 0.45)
    pen.polygon([(0.3, 0), (1, -0.55), (1, 0.55)])
    pen.ellipse(-0.75, -0.2, -0.55, 0.0, fill=0)


def _wave(pen):
    for base in (-0.35, 0.45):
        points = [(x / 10, base + 0.3 * math.sin(3 * math.pi * x / 10)) for x in range(-10, 11)]
        pen.line(points, 0.22)


def _anchor(pen):
    pen.line([(0, -0.6), (0, 0.85)], 0.18)
    pen.line([(-0.5, -0.35), (0.5, -0.35)], 0.15)
    pen.ellipse(-0.25, -1.0, 0.25, -0.55, fill=None, outline=255, width=2)
    pen.draw.arc([pen.p(-0.85, -0.1), pen.p(0.85, 0.9)], 0, 180, fill=255, width=max(1, round(0.18 * pen.r)))


def _cup(pen):
    pen.rect(-0.75, -0.6, 0.35, 0.85)
    pen.ellipse(0.1, -0.35, 0.9, 0.45, fill=None, outline=255, width=max(2, round(0.18 * pen.r)))


def _bottle(pen):
    pen.rect(-0.17, -1.0, 0.17, -0.3)
    pen.draw.rounded_rectangle([pen.p(-0.5, -0.4), pen.p(0.5, 1.0)], radius=0.2 * pen.r, fill=255)


def _fork(pen):
    pen.line([(0, -0.05), (0, 1.0)], 0.2)
    pen.line([(-0.5, -0.05), (0.5, -0.05)], 0.2)
    for u in (-0.5, 0.0, 0.5):
        pen.line([(u, -1.0), (u, -0.05)], 0.14)


def _plate(pen):
    pen.ellipse(-1.0, -0.6, 1.0, 0.6)
    pen.ellipse(-0.6, -0.33, 0.6, 0.33, fill=None, outline=0, width=2)


def _tree(pen):
    pen.rect(-0.15, 0.2, 0.15, 1.0)
    pen.ellipse(-0.8, -1.0, 0.8, 0.45)


def _flower(pen):
    for k in range(5):
        a = -math.pi / 2 + k * 2 * math.pi / 5
        u, v = 0.6 * math.cos(a), 0.6 * math.sin(a)
        pen.ellipse(u - 0.38, v - 0.38, u + 0.38, v + 0.38)
    pen.ellipse(-0.22, -0.22, 0.22, 0.22, fill=0)


def _house(pen):
    pen.rect(-0.7, -0.1, 0.7, 1.0)
    pen.polygon([(-0.95, -0.1), (0, -1.0), (0.95, -0.1)])
    pen.rect(-0.18, 0.4, 0.18, 1.0, fill=0)


def _fence(pen):
    for u in (-0.75, -0.12, 0.5):
        pen.polygon([(u, -0.6), (u + 0.12, -0.9), (u + 0.25, -0.6), (u + 0.25, 1.0), (u, 1.0)])
    pen.rect(-1.0, -0.3, 1.0, -0.12)
    pen.rect(-1.0, 0.45, 1.0, 0.63)


def _ball(pen):
    pen.ellipse(-0.85, -0.85, 0.85, 0.85)


def _kite(pen):
    pen.polygon([(0, -1.0), (0.6, -0.25), (0, 0.55), (-0.6, -0.25)])
    pen.line([(0, 0.55), (0.2, 0.7), (-0.1, 0.85), (0.2, 1.0)], 0.1)


def _drum(pen):
    pen.rect(-0.8, -0.4, 0.8, 0.7)
    pen.ellipse(-0.8, 0.45, 0.8, 0.95)
    pen.ellipse(-0.8, -0.65, 0.8, -0.15, fill=0, outline=255, width=2)


def _block(pen):
    pen.rect(-0.8, -0.8, 0.8, 0.8)


def _regular(corners: int, radius: float = 0.9, turn: float = -math.pi / 2):
    return [(radius * math.cos(turn + k * 2 * math.pi / corners), radius * math.sin(turn + k * 2 * math.pi / corners))
            for k in range(corners)]


GLYPH_OUTLINES = {  # outline name -> draws the filled outline
    "circle": lambda pen: pen.ellipse(-0.9, -0.9, 0.9, 0.9),
    "square": lambda pen: pen.rect(-0.85, -0.85, 0.85, 0.85),
    "triangle": lambda pen: pen.polygon(_regular(3, 1.0)),
    "diamond": lambda pen: pen.polygon([(0, -1), (0.75, 0), (0, 1), (-0.75, 0)]),
    "pentagon": lambda pen: pen.polygon(_regular(5)),
    "hexagon": lambda pen: pen.polygon(_regular(6, 0.95, 0)),
    "plus": lambda pen: (pen.rect(-0.3, -0.95, 0.3, 0.95), pen.rect(-0.95, -0.3, 0.95, 0.3)),
    "ring": lambda pen: pen.ellipse(-0.95, -0.95, 0.95, 0.95, fill=None, outline=255, width=max(2, round(0.3 * pen.r))),
    "pillar": lambda pen: pen.rect(-0.4, -1.0, 0.4, 1.0),
    "slab": lambda pen: pen.rect(-1.0, -0.45, 1.0, 0.45),
    "arrow": lambda pen: pen.polygon([(-1, -0.3), (0.1, -0.3), (0.1, -0.8), (1, 0), (0.1, 0.8), (0.1, 0.3), (-1, 0.3)]),
    "trapezoid": lambda pen: pen.polygon([(-0.5, -0.7), (0.5, -0.7), (1, 0.7), (-1, 0.7)]),
    "bowtie": lambda pen: (pen.polygon([(-1, -0.8), (0, 0), (-1, 0.8)]), pen.polygon([(1, -0.8), (0, 0), (1, 0.8)])),
}
GLYPH_MARKS = {  # mark name -> cuts it out of the outline (draws in 0)
    "plain": lambda pen: None,
    "holed": lambda pen: pen.ellipse(-0.3, -0.3, 0.3, 0.3, fill=0),
    "slotted": lambda pen: pen.rect(-1.0, -0.1, 1.0, 0.1, fill=0),
    "spotted": lambda pen: (pen.ellipse(-0.55, -0.2, -0.15, 0.2, fill=0), pen.ellipse(0.15, -0.2, 0.55, 0.2, fill=0)),
    "notched": lambda pen: pen.polygon([(-0.35, -1.05), (0.35, -1.05), (0, -0.35)], fill=0),
    "barred": lambda pen: pen.rect(-0.1, -1.0, 0.1, 1.0, fill=0),
}


def _glyph(outline: str, mark: str):
    def draw(pen):
        GLYPH_OUTLINES[outline](pen)
        GLYPH_MARKS[mark](pen)
    return draw


SHAPES = {
    "sun": _sun, "moon": _moon, "star": _star, "cloud": _cloud, "boat": _boat, "fish": _fish,
    "wave": _wave, "anchor": _anchor, "cup": _cup, "bottle": _bottle, "fork": _fork,
    "plate": _plate, "tree": _tree, "flower": _flower, "house": _house, "fence": _fence,
    "ball": _ball, "kite": _kite, "drum": _drum, "block": _block,
    **{f"glyph-{o}-{m}": _glyph(o, m) for o, m in itertools.product(GLYPH_OUTLINES, GLYPH_MARKS)},
}


def _shade(rgb) -> np.ndarray:
    """A contrasting tone of a colour: darker for light colours, lighter for dark ones."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb * 0.45 if rgb.mean() > 80 else rgb + 110


@lru_cache(maxsize=None)
def _pattern(colour: str, texture: str, image_size: int) -> np.ndarray:
    """[H, W, 3] float fill of a colour with a texture (outline is handled on the mask)."""
    base = np.asarray(COLOURS[colour], dtype=np.float32)
    fill = np.broadcast_to(base, (image_size, image_size, 3)).copy()
    ys, xs = np.mgrid[0:image_size, 0:image_size]
    if texture == "striped":
        fill[((xs + ys) // 3) % 2 == 1] = _shade(base)
    elif texture == "dotted":
        fill[(xs % 4 == 1) & (ys % 4 == 1)] = _shade(base)
        fill[(xs % 4 == 2) & (ys % 4 == 1)] = _shade(base)
    return fill


def object_mask(obj, world: World = TOY) -> Image.Image:
    """The 'L' mask (0/255) of one placed object as the renderer paints it."""
    pen = _Pen(obj.box, world.image_size)
    SHAPES[world.shapes[obj.name]](pen)
    mask = pen.mask
    if obj.texture == "outlined":
        inner = mask.filter(ImageFilter.MinFilter(5))
        mask = Image.fromarray(np.maximum(np.asarray(mask, np.int16) - np.asarray(inner, np.int16), 0).astype(np.uint8))
    return mask


def _draw_clutter(canvas: np.ndarray, marks, image_size: int) -> np.ndarray:
    for mark in marks:
        mask = Image.new("L", (image_size, image_size), 0)
        draw = ImageDraw.Draw(mask)
        if mark.kind == "scribble":
            draw.line(list(mark.points), fill=255, width=mark.width)
        else:
            draw.polygon(list(mark.points), fill=255)
        alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0  # [H, W, 1]
        canvas = canvas * (1 - alpha) + np.asarray(mark.colour, dtype=np.float32) * alpha
    return canvas


def render(sample: SceneSample, world: World = TOY) -> Image.Image:
    """The RGB image of a scene sample: background, clutter, then the objects in order."""
    size = world.image_size
    background = sample.background or world.scene_info[sample.scene].background
    canvas = np.broadcast_to(np.asarray(background, dtype=np.float32), (size, size, 3)).copy()
    canvas = _draw_clutter(canvas, sample.clutter, size)
    for obj in sample.objects:
        alpha = np.asarray(object_mask(obj, world), dtype=np.float32)[..., None] / 255.0  # [H, W, 1]
        canvas = canvas * (1 - alpha) + _pattern(obj.colour, obj.texture, size) * alpha
    return Image.fromarray(canvas.round().clip(0, 255).astype(np.uint8), "RGB")


def make_image(seed: int, index: int, world: World = TOY):
    """(image, sample) for image `index` of `world` drawn with `seed`."""
    sample = sample_scene(seed, index, world)
    return render(sample, world), sample
