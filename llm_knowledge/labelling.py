"""Which classes a sentence mentions: lemmatised name and synonym matching, longest first,
with context rules for the words that usually mean something else.

The same `Labeller` labels the LLM corpus here and any text on the training side. It works
offline: a small rule-based lemmatiser (plural stripping plus a table of irregular nouns)
is applied alike to the sentence and to every class phrase, so "two teddy bears" matches
"teddy bear" and leaves nothing for "bear".

It prefers precision: a phrase that matched is still dropped where the words around it say
it means something else (`ContextRules`, built-in tables in `llm_knowledge.synonyms`):
"bear in mind", "a baseball player" (not the ball), "an orange sky" (a colour, not the
fruit), "to sink", "the mouse" with no computer in the sentence.
"""

import re
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

from hiprompt.classnames import prompt_name
from llm_knowledge import synonyms as tables

_TOKEN = re.compile(r"[a-z0-9]+")
_TOKEN_OR_STOP = re.compile(r"[a-z0-9]+|[.,;:!?()\"]")  # words, and punctuation that ends a phrase

_IRREGULAR = {
    "people": "person", "persons": "person", "men": "man", "women": "woman",
    "children": "child", "mice": "mouse", "geese": "goose", "teeth": "tooth",
    "feet": "foot", "oxen": "ox", "knives": "knife", "wives": "wife", "leaves": "leaf",
    "loaves": "loaf", "shelves": "shelf", "wolves": "wolf", "calves": "calf",
    "halves": "half", "scarves": "scarf", "buses": "bus", "gasses": "gas",
    "cacti": "cactus", "dice": "die", "shoes": "shoe", "canoes": "canoe",
    "movies": "movie", "cookies": "cookie", "ties": "tie", "pies": "pie",
    "skis": "ski", "taxis": "taxi", "tvs": "tv",
}
# words that end in "s" but are not plurals
_KEEP = {
    "bus", "glass", "grass", "gas", "lens", "series", "species", "news", "chess",
    "physics", "scissors", "trousers", "jeans", "pants", "glasses", "clothes", "christmas",
    "always", "its", "this", "his", "has", "was", "is", "as", "us", "yes", "plus", "less",
    "campus", "cactus", "octopus", "virus", "circus", "status", "canvas", "atlas",
    "bonus", "texas", "across", "perhaps", "sometimes", "towards", "besides", "whereas",
}


def lemma(word: str) -> str:
    """The singular form of a lower-case English word (rules plus exceptions)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _KEEP or len(word) <= 3 or not word.endswith("s"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    if word.endswith("oes") and len(word) > 4:
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1]


def lemmas(text: str) -> List[str]:
    """The lemmatised lower-case word tokens of `text` (hyphens and punctuation split)."""
    return [lemma(token) for token in _TOKEN.findall(text.lower())]


def _phrase(text: str) -> Tuple[str, ...]:
    """A class phrase as the lemmas it is matched on."""
    return tuple(lemmas(text))


def _context(text: str) -> Tuple[str, ...]:
    """A context phrase as lemmas, punctuation kept as tokens ("sink" + "in .")."""
    return tuple(lemma(token) for token in _TOKEN_OR_STOP.findall(text.lower()))


@dataclass(frozen=True)
class ContextRules:
    """When a matched class phrase does not name its class, by the words around it.

    vetoes: {phrase: (phrases after it, phrases before it)}: the match is dropped when one
    of them stands right after (before) it ("bear" + "in mind", "heat" + "wave").
    verbs: phrases that are also verbs: dropped after a modal, "to" (not "next to") or an
    adverb that leads a verb, and before a determiner or pronoun ("sink into", "to tie the").
    nouns_only: words that are mostly adjectives (colours, "remote"): kept only when no noun
    follows, i.e. when plural, at a phrase end, or before a function word ("an orange on the
    table", not "an orange sky").
    needs: {phrase: words}: kept only when the sentence holds one of `words` ("mouse" with
    "computer", "keyboard", ...).
    All phrases are given as plain text and lemmatised like the sentence.
    """

    vetoes: Dict[Tuple[str, ...], Tuple[FrozenSet[tuple], FrozenSet[tuple]]] = field(default_factory=dict)
    verbs: FrozenSet[Tuple[str, ...]] = frozenset()
    nouns_only: FrozenSet[Tuple[str, ...]] = frozenset()
    needs: Dict[Tuple[str, ...], FrozenSet[str]] = field(default_factory=dict)
    verb_leads: FrozenSet[str] = frozenset()
    objects: FrozenSet[str] = frozenset()
    function_words: FrozenSet[str] = frozenset()

    @classmethod
    def from_tables(cls, vetoes: dict, verbs, nouns_only, needs: dict, verb_leads, objects,
                    function_words) -> "ContextRules":
        """Rules from plain-text tables ({phrase: {"after": [...], "before": [...]}}, ...)."""
        return cls(
            vetoes={_phrase(p): (frozenset(_context(a) for a in v.get("after", ())),
                                 frozenset(_context(b) for b in v.get("before", ())))
                    for p, v in vetoes.items()},
            verbs=frozenset(_phrase(p) for p in verbs),
            nouns_only=frozenset(_phrase(p) for p in nouns_only),
            needs={_phrase(p): frozenset(lemma(w) for w in words) for p, words in needs.items()},
            verb_leads=frozenset(lemma(w) for w in verb_leads),
            objects=frozenset(lemma(w) for w in objects),
            function_words=frozenset(lemma(w) for w in function_words),
        )

    def keeps(self, phrase: tuple, words: List[str], plural: List[bool], start: int,
              end: int, present: set) -> bool:
        """Whether `phrase`, matched at words[start:end], names its class here. `words`: the
        sentence's lemmas with punctuation as tokens; `plural[i]`: words[i] was plural in the
        text; `present`: the sentence's lemmas as a set."""
        after, before = self.vetoes.get(phrase, ((), ()))
        if any(tuple(words[end:end + len(a)]) == a for a in after):
            return False
        if any(start >= len(b) and tuple(words[start - len(b):start]) == b for b in before):
            return False
        following = words[end] if end < len(words) else "."
        preceding = words[start - 1] if start else "."
        if phrase in self.verbs:
            led = preceding in self.verb_leads and not (
                preceding == "to" and start >= 2 and words[start - 2] in _TO_AS_PREPOSITION)
            if led or following in self.objects:
                return False
        if phrase in self.nouns_only and not plural[end - 1]:
            if following.isalpha() and following not in self.function_words:
                return False
        needed = self.needs.get(phrase)
        return needed is None or bool(needed & present)


# "to" that ends a preposition ("next to a bear"), not a verb's infinitive
_TO_AS_PREPOSITION = frozenset(lemma(w) for w in (
    "next", "close", "closer", "near", "similar", "compared", "due", "according", "up", "back",
    "down", "belongs", "related", "attached", "thanks", "goes", "went", "comes", "came",
    "walks", "runs", "ran", "flies", "flew", "way", "returns", "heads", "drives", "drove",
    "travels", "rides", "rode", "moves", "listens", "points", "from", "leads", "led", "home",
    "bridge", "path", "road", "door", "entrance", "gate", "swims", "swam", "jumps", "jumped",
    "hurries", "rushed", "rushes", "on", "in", "out", "over"))


DEFAULT_RULES = ContextRules.from_tables(
    tables.CONTEXT_VETOES, tables.VERB_HOMOGRAPHS, tables.NOUNS_ONLY, tables.NEEDS_CONTEXT,
    tables.VERB_LEADS, tables.OBJECT_WORDS, tables.FUNCTION_WORDS)


class Labeller:
    """Finds the classes a text mentions by label name, prompt name or synonym.

    classnames: the label names, in class order; synonyms: {label: [phrase, ...]}. Phrases
    are matched on lemmatised tokens, longest phrase first at each position, and a matched
    span is not matched again (so "hot dog" is not also "dog"); a match the context rules
    drop (`rules`, default: the built-in ones of `llm_knowledge.synonyms`; `ContextRules()`
    for none) labels nothing, and matching goes on at the next word.
    """

    def __init__(self, classnames: Iterable[str], synonyms: Optional[Dict[str, list]] = None,
                 rules: Optional[ContextRules] = None):
        self.classnames = list(classnames)
        self._order = {label: i for i, label in enumerate(self.classnames)}
        synonyms = synonyms or {}
        unknown = sorted(set(synonyms) - set(self._order))
        if unknown:
            raise KeyError(f"synonyms given for unknown classes: {unknown}")
        self._rules = DEFAULT_RULES if rules is None else rules
        self._phrases: Dict[tuple, str] = {}
        for label in self.classnames:
            for phrase in [label, prompt_name(label), *synonyms.get(label, [])]:
                key = _phrase(phrase)
                if key and key not in self._phrases:
                    self._phrases[key] = label
        self._longest = max((len(k) for k in self._phrases), default=0)

    def find(self, text: str) -> List[str]:
        """The label names mentioned in `text`, each once, in class order."""
        raw = _TOKEN_OR_STOP.findall(text.lower())
        words = [lemma(token) for token in raw]
        plural = [word != token and token.endswith("s") for word, token in zip(words, raw)]
        present = set(words)
        found = set()
        i = 0
        while i < len(words):
            for size in range(min(self._longest, len(words) - i), 0, -1):
                key = tuple(words[i : i + size])
                label = self._phrases.get(key)
                if label is not None:
                    if self._rules.keeps(key, words, plural, i, i + size, present):
                        found.add(label)
                        i += size
                    else:
                        i += 1
                    break
            else:
                i += 1
        return sorted(found, key=self._order.__getitem__)
