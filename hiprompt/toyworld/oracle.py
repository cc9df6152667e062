"""The toy worlds' oracle: a knowledge back-end that answers from a world's tables.

It is NOT a language model. It stands in for one in the knowledge stage so that the whole
pipeline can run, offline and deterministically, on a world whose ground truth is known.
It answers the stage's structured questions (any object with `kind`, `prompt`, `classes`,
`attribute`, `count`, `attributes`) with raw text shaped as an LLM's answer: numbered lists
one item per line, groups as `1. a, b, c`, sentences one per line.

The back-end's `model` option names the world and, optionally, mistakes to make at set
rates, standing in for an LLM's errors: `toy80:wrong_attribute=0.1,wrong_class=0.05,
missing_member=0.1` (see `parse_model`). Empty: the default world, no mistakes.
"""

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from hiprompt.toyworld.world import COLOURS, POSITIONS, TEXTURES, TOY, world_tables
from hiprompt.toyworld.worlds import get_world
from llm_knowledge.backends.base import BackendOptions

DIMENSIONS = ("colour", "size", "texture", "shape", "position", "scene")
DEFAULT_SENTENCES = 5
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


@dataclass(frozen=True)
class OracleNoise:
    """Mistakes at set rates. wrong_attribute: a sentence states an attribute value the
    class does not have (in the asked attribute's dimension). wrong_class: a sentence is
    about another class of the world. missing_member: a class is left out of a group answer."""

    wrong_attribute: float = 0.0
    wrong_class: float = 0.0
    missing_member: float = 0.0

    def __post_init__(self):
        for name, rate in asdict(self).items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"toy oracle noise {name}={rate}: expected a rate in [0, 1]")

    @property
    def any(self) -> bool:
        return any(asdict(self).values())


def parse_model(model: str):
    """(world, OracleNoise) of a `model` option: `WORLD[:RATE=VALUE,...]`, empty = `toy`."""
    name, _, settings = (model or TOY.name).partition(":")
    rates = {}
    for item in filter(None, (part.strip() for part in settings.split(","))):
        key, equals, value = item.partition("=")
        if not equals or key not in OracleNoise.__dataclass_fields__:
            raise ValueError(
                f"toy oracle model {model!r}: {item!r} is not RATE=VALUE with RATE one of "
                f"{sorted(OracleNoise.__dataclass_fields__)}"
            )
        try:
            rates[key] = float(value)
        except ValueError:
            raise ValueError(f"toy oracle model {model!r}: {key} must be a number, got {value!r}") from None
    return get_world(name), OracleNoise(**rates)


def _numbered(items) -> str:
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


class ToyOracleBackend:
    """Answers the knowledge stage's questions from a toy world's tables (deterministic)."""

    def __init__(self, options: BackendOptions):
        self.seed = options.seed
        self.world, self.noise = parse_model(options.model or "")
        tables = world_tables(self.world)
        self._world_digest = hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:16]

    def identity(self) -> dict:
        identity = {"backend": "toy-oracle", "seed": self.seed, "world": self._world_digest}
        if self.noise.any:
            identity["noise"] = asdict(self.noise)
        return identity

    def answer_many(self, questions) -> list:
        return [self.answer(question) for question in questions]

    def answer(self, question) -> str:
        kind = question.kind
        handler = getattr(self, f"_{kind}", None)
        if handler is None:
            raise ValueError(f"the toy oracle cannot answer questions of kind {kind!r}")
        return handler(question)

    # ----------------------------------------------------------------- helpers
    def _rng(self, question, stream: str = "") -> np.random.Generator:
        """The answer's random stream; `stream` names another one (the mistakes')."""
        key = json.dumps([self.seed, question.kind, list(question.classes), getattr(question, "attribute", None)])
        return np.random.default_rng(int.from_bytes(hashlib.sha256((key + stream).encode()).digest()[:8], "little"))

    def _info(self, name: str):
        if name not in self.world.class_info:
            raise ValueError(f"the toy oracle knows nothing about {name!r} (not a {self.world.name}-world class)")
        return self.world.class_info[name]

    def _class_attributes_of(self, name: str) -> list:
        info = self.world.class_info[name]
        return list(dict.fromkeys([*info.colours, info.size, *info.textures, *info.shape_words, *info.scenes]))

    @staticmethod
    def _limit(items, count):
        return items if count is None else items[:count]

    # ----------------------------------------------------------------- attribute lists
    def _common_attributes(self, question) -> str:
        """The dimensions, then attribute words ordered by how many of the classes have them."""
        counts = {}
        for name in question.classes:
            if name in self.world.class_info:
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
        asked = self._info(question.classes[0])
        rng, mistakes = self._rng(question), self._rng(question, "mistakes")
        count = question.count or DEFAULT_SENTENCES
        sentences = []
        for _ in range(count * 20):
            info, attribute = asked, question.attribute or "shape"
            if self.noise.wrong_class and mistakes.random() < self.noise.wrong_class:
                others = [c for c in self.world.classes if c.name != asked.name]
                info = others[int(mistakes.integers(len(others)))]
            if self.noise.wrong_attribute and mistakes.random() < self.noise.wrong_attribute:
                attribute = self._wrong_attribute(info, attribute, mistakes)
            sentence = self._sentence(info, attribute, rng)
            if sentence not in sentences:
                sentences.append(sentence)
            if len(sentences) == count:
                break
        return "\n".join(sentences)

    def _wrong_attribute(self, info, attribute: str, rng: np.random.Generator) -> str:
        """A value the class does not have, in the dimension of `attribute` (shape words of
        other classes for shape, position, scene and words outside the vocabulary, and when
        the class has every value of the dimension, e.g. all four textures)."""
        pool = []
        if attribute in COLOURS or attribute == "colour":
            pool = [c for c in COLOURS if c not in info.colours]
        elif attribute in self.world.sizes or attribute == "size":
            pool = [s for s in self.world.sizes if s != info.size]
        elif attribute in TEXTURES or attribute == "texture":
            pool = [t for t in TEXTURES if t not in info.textures]
        if not pool:
            pool = sorted({w for c in self.world.classes for w in c.shape_words} - set(info.shape_words))
        return str(pool[int(rng.integers(len(pool)))])

    def _sentence(self, info, attribute: str, rng: np.random.Generator) -> str:
        """One sentence about a class that mentions the attribute, as a person would write it."""
        scene = str(rng.choice(info.scenes))
        action = str(rng.choice(self.world.scene_info[scene].actions))
        colour = str(rng.choice(info.colours))
        name = info.name
        if attribute in COLOURS:
            sentence = f"{_article(attribute + ' ' + name)} {action}"
        elif attribute in self.world.sizes:
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
        elif attribute in self.world.scene_info or attribute == "scene":
            place = attribute if attribute in self.world.scene_info else scene
            sentence = f"{_article(colour + ' ' + name)} belongs in the {place}"
        else:
            sentence = f"{_article(name)} with a {attribute} look {action}"
        mates = [c for c in self.world.scene_classes[scene] if c != name]
        if rng.random() < MATE_PROBABILITY:
            sentence += f", next to {_article(str(rng.choice(mates)))}"
        return sentence + "."

    def _relation(self, question) -> str:
        a, b = (self._info(n) for n in question.classes[:2])
        shared = [s for s in a.scenes if s in b.scenes]
        scene = shared[0] if shared else a.scenes[0]
        thirds = [c for c in self.world.scene_classes[scene] if c not in (a.name, b.name)]
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
                action=str(rng.choice(self.world.scene_info[scene].actions)),
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
        for name in self._members(question):
            info = self.world.class_info.get(name)
            groups.setdefault(info.scenes[0] if info else None, []).append(name)
        ordered = [groups[s] for s in self.world.scene_info if s in groups] + ([groups[None]] if None in groups else [])
        return _numbered(", ".join(group) for group in ordered)

    def _fine_groups(self, question) -> str:
        """Companion pairs (classes that usually appear together) apart from the rest."""
        members = self._members(question)
        companions = self.world.companions
        groups, rest = [], []
        for name in members:
            companion = companions.get(name, (None, 0.0))[0]
            if companion in members:
                groups.append([name, companion])
            elif not any(name in group for group in groups) and not any(
                companions.get(other, (None,))[0] == name for other in members
            ):
                rest.append(name)
        if rest:
            groups.append(rest)
        return _numbered(", ".join(group) for group in groups)

    def _members(self, question) -> list:
        """The classes to group, less those a `missing_member` mistake leaves out."""
        if not self.noise.missing_member:
            return list(question.classes)
        mistakes = self._rng(question, "mistakes")
        return [name for name in question.classes if mistakes.random() >= self.noise.missing_member]
