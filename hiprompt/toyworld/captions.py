"""Captions of toy-world images: the objects with some of their attributes, in varied templates.

A world's `CaptionStyle` sets how often attributes and positions are stated and how noisy
captions are: objects left out, classes called by a synonym, attribute words that are
wrong. `describe` returns the caption with a record of what it says about each object
(used to measure the noise); `caption` only the text.
"""

from dataclasses import dataclass

import numpy as np

from hiprompt.toyworld.world import COLOURS, TEXTURES, TOY, SceneSample, World

TEMPLATES = (
    "a photo of {objects}.",
    "{objects} in the {scene}.",
    "a {scene} scene with {objects}.",
    "a picture showing {objects}.",
    "{objects}.",
    "there is {objects} in this {scene} picture.",
    "an image of {objects}.",
)
POSITION_PHRASES = {
    "left": "on the left", "right": "on the right", "top": "at the top",
    "bottom": "at the bottom", "middle": "in the middle",
}
ATTRIBUTE_FIELDS = ("size", "colour", "texture")


@dataclass(frozen=True)
class Mention:
    """What a caption says about one object: the word naming it and the attributes stated."""

    name: str  # the object's class
    word: str  # the class name or a synonym
    stated: tuple  # ((field, word), ...) attributes stated, in order
    wrong: tuple  # fields whose stated word is not the object's own
    phrase: str  # the object's phrase in the caption


@dataclass(frozen=True)
class Caption:
    text: str
    mentions: tuple  # Mention of each object named, in caption order


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _vocabulary(field: str, world: World) -> tuple:
    return {"size": tuple(world.sizes), "colour": tuple(COLOURS), "texture": TEXTURES}[field]


def object_mention(obj, rng: np.random.Generator, world: World = TOY) -> Mention:
    """`a small red striped star on the left`, each attribute present at random (and, in a
    noisy style, wrong at random), the class named by a synonym at random."""
    style = world.caption_style
    stated, wrong = [], []
    for field in ATTRIBUTE_FIELDS:
        if rng.random() < style.attribute_probability:
            value = getattr(obj, field)
            if style.wrong_attribute_probability and rng.random() < style.wrong_attribute_probability:
                value = str(rng.choice([v for v in _vocabulary(field, world) if v != value]))
                wrong.append(field)
            stated.append((field, value))
    word = obj.name
    synonyms = world.synonyms.get(obj.name, ())
    if synonyms and rng.random() < style.synonym_probability:
        word = str(rng.choice(synonyms))
    phrase = with_article(" ".join([value for _, value in stated] + [word]))
    if rng.random() < style.position_probability:
        phrase += " " + POSITION_PHRASES[obj.position]
    return Mention(obj.name, word, tuple(stated), tuple(wrong), phrase)


def join_phrases(phrases) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _named_objects(objects: list, rng: np.random.Generator, world: World) -> list:
    style = world.caption_style
    if style.omit_probability:
        kept = [obj for obj in objects if rng.random() >= style.omit_probability]
        return kept or objects[:1]
    if len(objects) > 1 and rng.random() >= style.all_objects_probability:
        return objects[: int(rng.integers(1, len(objects)))]
    return objects


def describe(sample: SceneSample, rng: np.random.Generator, world: World = TOY) -> Caption:
    """A caption of the objects named (all, or some left out as the world's style says)."""
    objects = list(sample.objects)
    order = rng.permutation(len(objects))
    objects = _named_objects([objects[i] for i in order], rng, world)
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    mentions = tuple(object_mention(o, rng, world) for o in objects)
    text = template.format(objects=join_phrases([m.phrase for m in mentions]), scene=sample.scene)
    return Caption(text, mentions)


def caption(sample: SceneSample, rng: np.random.Generator, world: World = TOY) -> str:
    return describe(sample, rng, world).text


def caption_for(sample: SceneSample, seed: int, index: int, world: World = TOY, draw: int = 0) -> str:
    """The caption of image `index` of a seed (its own random stream, apart from drawing);
    `draw` > 0 gives the same image further, independent captions."""
    stream = [seed, index, 1] if draw == 0 else [seed, index, 1, draw]
    return caption(sample, np.random.default_rng(stream), world)
