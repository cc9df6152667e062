"""Which classes a sentence mentions: lemmatised name and synonym matching, longest first,
with context rules for the words that usually mean something else.

The same `Labeller` labels the LLM corpus here and any text on the training side. It works
offline: a small rule-based lemmatiser (plural stripping plus a table of irregular nouns)
is applied alike to the sentence and to every class phrase, so "two teddy bears" matches
"teddy bear" and leaves nothing for "bear".

It prefers precision: a phrase that matched is still dropped where the words around it say
it means something else (`ContextRules`, built-in tables in `llm_knowledge.synonyms`):
"bear in mind", "a baseball player" (not the ball), "an orange sky" (a colour, not the
fruit), "to sink", "the mouse" with no computer in the sentence, "the table lists the
results" (a table of data), "Apple released" (a company's name), "snow falls" (a verb, where
"the falls" is a waterfall).
"""

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

from hiprompt.classnames import prompt_name
from llm_knowledge import synonyms as tables

_TOKEN = re.compile(r"[a-z0-9]+", re.ASCII | re.IGNORECASE)
# words, and punctuation that ends a phrase
_TOKEN_OR_STOP = re.compile(r"[a-z0-9]+|[.,;:!?()\"]", re.ASCII | re.IGNORECASE)
# tokens after which a capital letter starts a sentence rather than a name
_SENTENCE_OPENERS = frozenset('.!?:"(')

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
    if word.endswith("oes") and len(word) > 5:  # tomatoes, heroes; not toes, floes, oboes
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1]


def lemmas(text: str) -> List[str]:
    """The lemmatised lower-case word tokens of `text` (hyphens and punctuation split)."""
    return [lemma(token.lower()) for token in _TOKEN.findall(text)]


def _phrase(text: str) -> Tuple[str, ...]:
    """A class phrase as the lemmas it is matched on."""
    return tuple(lemmas(text))


def _context(text: str) -> Tuple[str, ...]:
    """A context phrase as lemmas, punctuation kept as tokens ("sink" + "in .")."""
    return tuple(lemma(token.lower()) for token in _TOKEN_OR_STOP.findall(text))


@dataclass(frozen=True)
class ContextRules:
    """When a matched class phrase does not name its class, by the words around it.

    vetoes: {phrase: (phrases after it, phrases before it)}: the match is dropped when one
    of them stands right after (before) it ("bear" + "in mind", "heat" + "wave").
    verbs: phrases that are also verbs: dropped after a modal, "to" (not "next to") or an
    adverb that leads a verb, and before a determiner or pronoun ("sink into", "to tie the"),
    unless a measure noun follows the determiner ("a bear the size of a car").
    nouns_only: words that are mostly adjectives (colours, "remote"): kept only when no noun
    follows, i.e. when plural, at a phrase end, or before a function word ("an orange on the
    table", not "an orange sky").
    needs: {phrase: words}: kept only when the sentence holds one of `words` ("mouse" with
    "computer", "keyboard", ...).
    avoids: {phrase: words}: dropped when the sentence holds one of `words`, which belong to
    the phrase's other sense ("table" with "results", "column", "report", ...).
    after_determiner: phrases that are mostly verbs and name their class only right after
    one of `determiners` ("the falls", not "snow falls").
    proper_names: phrases that, capitalised inside a sentence, are a name ("Apple", "Orange",
    "Windows"); a capital at the start of a sentence says nothing.
    measures: nouns that make "the" after a verb homograph the start of a measure phrase.
    comparisons: phrases that introduce a standard of comparison or a likeness ("the size
    of", "bigger than", "shaped like"): a match that follows one, with at most
    `COMPARISON_GAP` words (a determiner, an adjective) between, names nothing that is there
    ("as tall as a two-storey building", "the size of a small car"), unless one of
    `specific` makes it a particular thing ("smaller than the dog").
    All phrases are given as plain text and lemmatised like the sentence.
    """

    vetoes: Dict[Tuple[str, ...], Tuple[FrozenSet[tuple], FrozenSet[tuple]]] = field(default_factory=dict)
    verbs: FrozenSet[Tuple[str, ...]] = frozenset()
    nouns_only: FrozenSet[Tuple[str, ...]] = frozenset()
    needs: Dict[Tuple[str, ...], FrozenSet[str]] = field(default_factory=dict)
    verb_leads: FrozenSet[str] = frozenset()
    objects: FrozenSet[str] = frozenset()
    function_words: FrozenSet[str] = frozenset()
    avoids: Dict[Tuple[str, ...], FrozenSet[str]] = field(default_factory=dict)
    after_determiner: FrozenSet[Tuple[str, ...]] = frozenset()
    determiners: FrozenSet[str] = frozenset()
    proper_names: FrozenSet[Tuple[str, ...]] = frozenset()
    measures: FrozenSet[str] = frozenset()
    comparisons: FrozenSet[Tuple[str, ...]] = frozenset()
    specific: FrozenSet[str] = frozenset()

    @classmethod
    def from_tables(cls, vetoes: dict, verbs, nouns_only, needs: dict, verb_leads, objects,
                    function_words, avoids: Optional[dict] = None, after_determiner=(),
                    determiners=(), proper_names=(), measures=(), comparisons=(),
                    specific=()) -> "ContextRules":
        """Rules from plain-text tables ({phrase: {"after": [...], "before": [...]}}, ...)."""
        return cls(
            vetoes=_lemmatised_vetoes(vetoes),
            verbs=frozenset(_phrase(p) for p in verbs),
            nouns_only=frozenset(_phrase(p) for p in nouns_only),
            needs={_phrase(p): frozenset(lemma(w) for w in words) for p, words in needs.items()},
            verb_leads=frozenset(lemma(w) for w in verb_leads),
            objects=frozenset(lemma(w) for w in objects),
            function_words=frozenset(lemma(w) for w in function_words),
            avoids={_phrase(p): frozenset(lemma(w) for w in words)
                    for p, words in (avoids or {}).items()},
            after_determiner=frozenset(_phrase(p) for p in after_determiner),
            determiners=frozenset(lemma(w) for w in determiners),
            proper_names=frozenset(_phrase(p) for p in proper_names),
            measures=frozenset(lemma(w) for w in measures),
            comparisons=frozenset(_context(c) for c in comparisons),
            specific=frozenset(lemma(w) for w in specific),
        )

    def keeps(self, phrase: tuple, words: List[str], plural: List[bool], start: int,
              end: int, present: set, capitalised: Optional[List[bool]] = None) -> bool:
        """Whether `phrase`, matched at words[start:end], names its class here. `words`: the
        sentence's lemmas with punctuation as tokens; `plural[i]`: words[i] was plural in the
        text; `present`: the sentence's lemmas as a set; `capitalised[i]`: words[i] was
        written with a capital and lower case after it (default: none was)."""
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
            measured = end + 1 < len(words) and words[end + 1] in self.measures
            if led or (following in self.objects and not measured):
                return False
        if phrase in self.after_determiner and preceding not in self.determiners:
            return False
        if (phrase in self.proper_names and capitalised is not None and capitalised[start]
                and start > 0 and preceding not in _SENTENCE_OPENERS):
            return False
        if self.avoids.get(phrase, frozenset()) & present:
            return False
        if self.comparisons and self._compared(words, start):
            return False
        if phrase in self.nouns_only and not plural[end - 1]:
            if following.isalpha() and following not in self.function_words:
                return False
        needed = self.needs.get(phrase)
        return needed is None or bool(needed & present)

    def _compared(self, words: List[str], start: int) -> bool:
        """Whether a comparison phrase ends at most COMPARISON_GAP words before `start`,
        with no punctuation and no specific determiner in between."""
        for gap in range(COMPARISON_GAP + 1):
            end = start - gap
            if end < 1 or (gap and (not words[end].isalnum() or words[end] in self.specific)):
                return False
            if any(end >= len(c) and tuple(words[end - len(c):end]) == c
                   for c in self.comparisons):
                return True
        return False


# words allowed between a comparison phrase and the thing compared ("than a small")
COMPARISON_GAP = 2


def _lemmatised_vetoes(vetoes: dict) -> Dict[tuple, Tuple[FrozenSet[tuple], FrozenSet[tuple]]]:
    """{phrase: (after, before)} as lemmas; phrases that lemmatise alike ("castle",
    "castles") share the union of their lists."""
    result: Dict[tuple, Tuple[FrozenSet[tuple], FrozenSet[tuple]]] = {}
    for phrase, context in vetoes.items():
        after, before = result.get(_phrase(phrase), (frozenset(), frozenset()))
        result[_phrase(phrase)] = (after | {_context(a) for a in context.get("after", ())},
                                   before | {_context(b) for b in context.get("before", ())})
    return result


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
    tables.VERB_LEADS, tables.OBJECT_WORDS, tables.FUNCTION_WORDS, tables.AVOIDS_CONTEXT,
    tables.AFTER_DETERMINER, tables.DETERMINERS, tables.PROPER_NAMES, tables.MEASURE_NOUNS,
    tables.COMPARISONS, tables.SPECIFIC_DETERMINERS)


def rules_digest() -> str:
    """SHA-256 of the labeller's code and built-in tables (this module and
    `llm_knowledge.synonyms`): changes whenever a sentence could be labelled differently."""
    digest = hashlib.sha256()
    for module_file in (__file__, tables.__file__):
        digest.update(Path(module_file).read_bytes())
    return digest.hexdigest()


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
        cased = _TOKEN_OR_STOP.findall(text)
        raw = [token.lower() for token in cased]
        words = [lemma(token) for token in raw]
        plural = [word != token and token.endswith("s") for word, token in zip(words, raw)]
        capitalised = [token[0].isupper() and not token[1:2].isupper() for token in cased]
        present = set(words)
        found = set()
        i = 0
        while i < len(words):
            for size in range(min(self._longest, len(words) - i), 0, -1):
                key = tuple(words[i : i + size])
                label = self._phrases.get(key)
                if label is not None:
                    if self._rules.keeps(key, words, plural, i, i + size, present,
                                         capitalised):
                        found.add(label)
                        i += size
                    else:
                        i += 1
                    break
            else:
                i += 1
        return sorted(found, key=self._order.__getitem__)
