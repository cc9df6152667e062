"""Which classes a sentence mentions: lemmatised name and synonym matching, longest first.

The same `Labeller` labels the LLM corpus here and any text on the training side. It works
offline: a small rule-based lemmatiser (plural stripping plus a table of irregular nouns)
is applied alike to the sentence and to every class phrase, so "two teddy bears" matches
"teddy bear" and leaves nothing for "bear".
"""

import re
from typing import Dict, Iterable, List, Optional

from hiprompt.classnames import prompt_name

_TOKEN = re.compile(r"[a-z0-9]+")

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


class Labeller:
    """Finds the classes a text mentions by label name, prompt name or synonym.

    classnames: the label names, in class order; synonyms: {label: [phrase, ...]}. Phrases
    are matched on lemmatised tokens, longest phrase first at each position, and a matched
    span is not matched again (so "hot dog" is not also "dog").
    """

    def __init__(self, classnames: Iterable[str], synonyms: Optional[Dict[str, list]] = None):
        self.classnames = list(classnames)
        self._order = {label: i for i, label in enumerate(self.classnames)}
        synonyms = synonyms or {}
        unknown = sorted(set(synonyms) - set(self._order))
        if unknown:
            raise KeyError(f"synonyms given for unknown classes: {unknown}")
        self._phrases: Dict[tuple, str] = {}
        for label in self.classnames:
            for phrase in [label, prompt_name(label), *synonyms.get(label, [])]:
                key = tuple(lemmas(phrase))
                if key and key not in self._phrases:
                    self._phrases[key] = label
        self._longest = max((len(k) for k in self._phrases), default=0)

    def find(self, text: str) -> List[str]:
        """The label names mentioned in `text`, each once, in class order."""
        tokens = lemmas(text)
        found = set()
        i = 0
        while i < len(tokens):
            for size in range(min(self._longest, len(tokens) - i), 0, -1):
                label = self._phrases.get(tuple(tokens[i : i + size]))
                if label is not None:
                    found.add(label)
                    i += size
                    break
            else:
                i += 1
        return sorted(found, key=self._order.__getitem__)
