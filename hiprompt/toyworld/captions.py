"""Captions of toy-world images: the objects with some of their attributes, in varied templates."""

import numpy as np

from .world import SceneSample

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
ATTRIBUTE_PROBABILITY = 0.5
POSITION_PROBABILITY = 0.2
ALL_OBJECTS_PROBABILITY = 0.7


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def object_phrase(obj, rng: np.random.Generator) -> str:
    """`a small red striped star on the left`, each attribute present at random."""
    words = [
        value for value in (obj.size, obj.colour, obj.texture)
        if rng.random() < ATTRIBUTE_PROBABILITY
    ]
    phrase = with_article(" ".join(words + [obj.name]))
    if rng.random() < POSITION_PROBABILITY:
        phrase += " " + POSITION_PHRASES[obj.position]
    return phrase


def join_phrases(phrases) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(sample: SceneSample, rng: np.random.Generator) -> str:
    """A caption naming all objects (mostly) or a random non-empty subset of them."""
    objects = list(sample.objects)
    order = rng.permutation(len(objects))
    objects = [objects[i] for i in order]
    if len(objects) > 1 and rng.random() >= ALL_OBJECTS_PROBABILITY:
        objects = objects[: int(rng.integers(1, len(objects)))]
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return template.format(objects=join_phrases([object_phrase(o, rng) for o in objects]), scene=sample.scene)


def caption_for(sample: SceneSample, seed: int, index: int) -> str:
    """The caption of image `index` of a seed (its own random stream, apart from drawing)."""
    return caption(sample, np.random.default_rng([seed, index, 1]))
