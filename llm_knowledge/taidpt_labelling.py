"""TaI-DPT's caption labelling (guozix/TaI-DPT, `datasets/coco2014_distill.py`), as a switch
of `python -m llm_knowledge.captions --labeller taidpt` beside the project's labeller.

The rule, as its code applies it: the caption is lower-cased, split into words and tagged by
NLTK, and each word replaced by its WordNet lemma for its part of speech (a noun when the tag
is none of adjective, verb, noun, adverb); the lemmas are joined by single spaces with a
space at each end. The names of each class (its label and its synonyms, as given) are then
looked for as " name ": first every name of more than one word, then every one-word name and
every multi-word name written without its spaces ("hot dog" -> "hotdog"). A name found labels
its class and each of its occurrences is replaced by a space, so a span is read once: "hot
dog" found removes the "dog" inside it. TaI-DPT walks its names in Python-set order, which is
not fixed; here the multi-word names go longest first (then in class order), so that a name
inside a longer one never takes its words first.

NLTK and its data (`punkt`/`punkt_tab`, `averaged_perceptron_tagger`/`_eng`, `wordnet`) are
needed only for `nltk_lemmas`: `pip install nltk` and `python -m nltk.downloader punkt_tab
averaged_perceptron_tagger_eng wordnet` where there is internet access.
"""

from typing import Callable, Dict, List, Sequence


def nltk_lemmas(text: str) -> List[str]:
    """TaI-DPT's lemmas of `text` (lower-cased, NLTK-tokenised, POS-tagged, WordNet-lemmatised);
    a RuntimeError saying what to install when NLTK or its data is missing."""
    try:
        from nltk import pos_tag, word_tokenize
        from nltk.corpus import wordnet
        from nltk.stem import WordNetLemmatizer
    except ImportError:
        raise RuntimeError("--labeller taidpt needs NLTK: pip install nltk") from None
    try:
        kinds = {"J": wordnet.ADJ, "V": wordnet.VERB, "N": wordnet.NOUN, "R": wordnet.ADV}
        tagged = pos_tag(word_tokenize(text.lower()))
        lemmatizer = WordNetLemmatizer()
        return [lemmatizer.lemmatize(word, pos=kinds.get(tag[:1], wordnet.NOUN)) for word, tag in tagged]
    except LookupError as error:
        missing = str(error).split("Resource", 1)[-1].split("not found", 1)[0].strip(" \n*")
        raise RuntimeError(f"--labeller taidpt needs NLTK's data ({missing or 'punkt, tagger, wordnet'}): run "
                           "python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng wordnet") from None


class WordMatchLabeller:
    """`find(text)` -> the labels whose names occur in `text`'s lemmas, in class order.

    classnames: the labels; synonyms: {label: [name, ...]} (the label itself is always a name);
    lemmas: text -> its lemma words (default `nltk_lemmas`)."""

    def __init__(self, classnames: Sequence[str], synonyms: Dict[str, List[str]],
                 lemmas: Callable[[str], List[str]] = nltk_lemmas):
        self.classnames = list(classnames)
        self.lemmas = lemmas
        owner = {}
        for label in self.classnames:
            for name in [label, *synonyms.get(label, [])]:
                name = " ".join(name.lower().split())
                owner.setdefault(name, label)
                if " " in name:
                    owner.setdefault(name.replace(" ", ""), label)
        order = {label: i for i, label in enumerate(self.classnames)}
        compound = sorted((n for n in owner if " " in n), key=lambda n: (-len(n.split()), order[owner[n]]))
        single = sorted((n for n in owner if " " not in n), key=lambda n: order[owner[n]])
        self._names = [(name, owner[name]) for name in compound + single]

    def find(self, text: str) -> List[str]:
        caption = " " + " ".join(self.lemmas(text)) + " "
        found = set()
        for name, label in self._names:
            padded = f" {name} "
            if padded in caption:
                found.add(label)
                caption = caption.replace(padded, " ")
        return [label for label in self.classnames if label in found]
