"""The toy world's oracle: a knowledge back-end that answers from the world's tables.

It is NOT a language model. It stands in for one in the knowledge stage so that the whole
pipeline can run, offline and deterministically, on a world whose ground truth is known.
It answers the stage's structured questions (any object with `kind`, `prompt`, `classes`,
`attribute`, `count`, `attributes`) with raw text shaped as an LLM's answer: numbered lists
one item per line, groups as `1. a, b, c`, sentences one per line.
"""

import hashlib
import json

import numpy as np

from .world import (
    CLASS_INFO, COLOURS, COMPANIONS, POSITIONS, SCENE_CLASSES, SCENE_INFO, SIZES, TEXTURES,
    world_tables,
)

DIMENSIONS = ("colour", "size", "texture", "shape", "position", "scene")
DEFAULT_SENTENCES = 5
SCENE_ACTIONS = {
    "sky": ("glows in the night sky", "hangs high in the sky", "floats across the sky", "shines above the hills"),
    "sea": ("drifts on the sea", "bobs on the waves", "rests by the shore", "moves through the water"),
    "kitchen": ("sits on the kitchen table", "stands on the counter", "waits by the sink", "rests on the shelf"),
    "garden": ("stands in the garden", "sits on the grass", "is seen in the yard", "rests by the path"),
    "playroom": ("lies on the playroom floor", "waits among the toys", "sits on the rug", "rests on the toy shelf"),
}
POSITION_PHRASES = {
    "left": "on the left", "right": "on the right", "top": "at the top",
    "bottom": "at the bottom", "middle": "in the middle",
}
RELATION_TEMPLATES = (  # {A}: the first class with its article, {a}: its bare name
    "{A} and {B} in the {scene}.",
    "the {a} is next to the {b}.",
    "{coloured_A} {action}, close to {B}.",
    "there is {B} beside the {a} in this {scene}.",
    "{A}, {B} and {C} are together in the {scene}.",
    "in the {scene} {B} is near {coloured_A}.",
    "{sized_A} sits next to {B} and {C}.",
)
MATE_PROBABILITY = 0.2


def _numbered(items) -> str:
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


class ToyOracleBackend:
    """Answers the knowledge stage's questions from the toy world's tables (deterministic)."""

    def __init__(self, *, seed: int = 0):
        self.seed = seed
        self._world_digest = hashlib.sha256(json.dumps(world_tables(), sort_keys=True).encode()).hexdigest()[:16]

    def identity(self) -> dict:
        return {"backend": "toy-oracle", "seed": self.seed, "world": self._world_digest}

    def answer_many(self, questions) -> list:
        return [self.answer(question) for question in questions]

    def answer(self, question) -> str:
        kind = question.kind
        handler = getattr(self, f"_{kind}", None)
        if handler is None:
            raise ValueError(f"the toy oracle cannot answer questions of kind {kind!r}")
        return handler(question)

    # ----------------------------------------------------------------- helpers
    def _rng(self, question) -> np.random.Generator:
        key = json.dumps([self.seed, question.kind, list(question.classes), getattr(question, "attribute", None)])
        return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))

    @staticmethod
    def _info(name: str):
        if name not in CLASS_INFO:
            raise ValueError(f"the toy oracle knows nothing about {name!r} (not a toy-world class)")
        return CLASS_INFO[name]

    @staticmethod
    def _class_attributes_of(name: str) -> list:
        info = CLASS_INFO[name]
        return list(dict.fromkeys([*info.colours, info.size, *info.textures, *info.shape_words, *info.scenes]))

    @staticmethod
    def _limit(items, count):
        return items if count is None else items[:count]

    # ----------------------------------------------------------------- attribute lists
    def _common_attributes(self, question) -> str:
        """The dimensions, then attribute words ordered by how many of the classes have them."""
        counts = {}
        for name in question.classes:
            if name in CLASS_INFO:
                for word in self._class_attributes_of(name):
                    counts[word] = counts.get(word, 0) + 1
        shared = sorted((w for w, n in counts.items() if n >= 2), key=lambda w: -counts[w])
        return _numbered(self._limit(list(DIMENSIONS) + shared, question.count))

    def _class_attributes(self, question) -> str:
        name = question.classes[0]
        self._info(name)
        return _numbered(self._limit(self._class_attributes_of(name), question.count))

    def _filter_attributes(self, question) -> str:
        """The given attributes that the class has, or that are dimensions or positions."""
        own = set(self._class_attributes_of(self._info(question.classes[0]).name))
        keep = [a for a in question.attributes or () if a in own or a in DIMENSIONS or a in POSITIONS]
        return _numbered(self._limit(keep, question.count))

    # ----------------------------------------------------------------- sentences
    def _describe(self, question) -> str:
        info = self._info(question.classes[0])
        rng = self._rng(question)
        count = question.count or DEFAULT_SENTENCES
        sentences = []
        for _ in range(count * 20):
            sentence = self._sentence(info, question.attribute or "shape", rng)
            if sentence not in sentences:
                sentences.append(sentence)
            if len(sentences) == count:
                break
        return "\n".join(sentences)

    def _sentence(self, info, attribute: str, rng: np.random.Generator) -> str:
        """One sentence about a class that mentions the attribute, as a person would write it."""
        scene = str(rng.choice(info.scenes))
        action = str(rng.choice(SCENE_ACTIONS[scene]))
        colour = str(rng.choice(info.colours))
        name = info.name
        if attribute in COLOURS:
            sentence = f"{_article(attribute + ' ' + name)} {action}"
        elif attribute in SIZES:
            sentence = f"{_article(attribute + ' ' + name)} {action}"
        elif attribute in TEXTURES:
            sentence = f"{_article(attribute + ' ' + colour + ' ' + name)} {action}"
        elif attribute in POSITIONS:
            sentence = f"{_article(colour + ' ' + name)} {POSITION_PHRASES[attribute]} of the picture"
        elif attribute in info.shape_words or attribute == "shape":
            shape = attribute if attribute != "shape" else str(rng.choice(info.shape_words))
            sentence = f"the {name} looks {shape} as it {action}"
        elif attribute == "colour":
            sentence = f"the colour of the {name} is {colour}, and it {action}"
        elif attribute == "size":
            sentence = f"the {name} is {info.size}, and it {action}"
        elif attribute == "texture":
            sentence = f"the {name} has a {str(rng.choice(info.textures))} surface"
        elif attribute in SCENE_INFO or attribute == "scene":
            place = attribute if attribute in SCENE_INFO else scene
            sentence = f"{_article(colour + ' ' + name)} belongs in the {place}"
        else:
            sentence = f"{_article(name)} with a {attribute} look {action}"
        mates = [c for c in SCENE_CLASSES[scene] if c != name]
        if rng.random() < MATE_PROBABILITY:
            sentence += f", next to {_article(str(rng.choice(mates)))}"
        return sentence + "."

    def _relation(self, question) -> str:
        a, b = (self._info(n) for n in question.classes[:2])
        shared = [s for s in a.scenes if s in b.scenes]
        scene = shared[0] if shared else a.scenes[0]
        thirds = [c for c in SCENE_CLASSES[scene] if c not in (a.name, b.name)]
        rng = self._rng(question)
        count = question.count or DEFAULT_SENTENCES
        sentences = []
        for _ in range(count * 20):
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            template = RELATION_TEMPLATES[int(rng.integers(len(RELATION_TEMPLATES)))]
            if "{C}" in template and not thirds:
                continue
            third = str(rng.choice(thirds)) if thirds else ""
            sentence = template.format(
                a=first.name, b=second.name, A=_article(first.name), B=_article(second.name),
                C=_article(third) if third else "", scene=scene,
                coloured_A=_article(f"{rng.choice(first.colours)} {first.name}"),
                sized_A=_article(f"{first.size} {first.name}"),
                action=str(rng.choice(SCENE_ACTIONS[scene])),
            )
            if sentence not in sentences:
                sentences.append(sentence)
            if len(sentences) == count:
                break
        return "\n".join(sentences)

    # ----------------------------------------------------------------- groups
    def _coarse_groups(self, question) -> str:
        """Classes grouped by their (first) scene; classes outside the world form one last group."""
        groups = {}
        for name in question.classes:
            key = CLASS_INFO[name].scenes[0] if name in CLASS_INFO else None
            groups.setdefault(key, []).append(name)
        ordered = [groups[s] for s in SCENE_INFO if s in groups] + ([groups[None]] if None in groups else [])
        return _numbered(", ".join(group) for group in ordered)

    def _fine_groups(self, question) -> str:
        """Companion pairs (classes that usually appear together) apart from the rest."""
        members = list(question.classes)
        groups, rest = [], []
        for name in members:
            companion = COMPANIONS.get(name, (None, 0.0))[0]
            if companion in members:
                groups.append([name, companion])
            elif not any(name in group for group in groups) and not any(
                COMPANIONS.get(other, (None,))[0] == name for other in members
            ):
                rest.append(name)
        if rest:
            groups.append(rest)
        return _numbered(", ".join(group) for group in groups)
