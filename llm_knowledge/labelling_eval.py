"""Precision and recall of the labeller on hand-labelled sentences.

The file format (tab-separated, `#` starts a comment line): class set (a built-in set:
coco, voc2007, nuswide), gold labels (label names of that set, comma-separated; `-` for
none), sentence. `tests/data/labelling_eval.tsv` is the project's set (the context rules
were tuned on it), `tests/data/labelling_heldout2.tsv` the held-out one (written after the
rules were final, measured once); `scripts/eval_labeller.py` prints the figures per class set.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from hiprompt.classnames import BUILTIN_CLASS_SETS, builtin_class_set
from llm_knowledge.labelling import Labeller
from llm_knowledge.synonyms import default_synonyms


@dataclass(frozen=True)
class Example:
    class_set: str
    gold: Tuple[str, ...]
    text: str
    line: int


@dataclass
class Score:
    """Micro counts over labels: true positives, false positives, false negatives."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    sentences: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def read_examples(path) -> List[Example]:
    """The examples of a file in the format above; errors name the file and line."""
    path = Path(path)
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected 3 tab-separated fields (class set, "
                             f"gold labels, sentence), got {len(fields)}")
        class_set, gold, text = fields
        if class_set not in BUILTIN_CLASS_SETS:
            raise ValueError(f"{path}:{number}: class set {class_set!r} is not one of "
                             f"{sorted(BUILTIN_CLASS_SETS)}")
        labels = () if gold.strip() == "-" else tuple(g.strip() for g in gold.split(","))
        unknown = [g for g in labels if g not in builtin_class_set(class_set)]
        if unknown or not text.strip():
            raise ValueError(f"{path}:{number}: " + (
                f"labels {unknown} are not in class set {class_set!r}" if unknown
                else "empty sentence"))
        examples.append(Example(class_set, labels, text, number))
    return examples


def builtin_labeller(class_set: str) -> Labeller:
    classes = builtin_class_set(class_set)
    return Labeller(classes, default_synonyms(classes, class_set))


def evaluate(examples) -> Tuple[Dict[str, Score], List[tuple]]:
    """(score per class set, errors): errors are (example, found labels) where they differ."""
    scores: Dict[str, Score] = {}
    labellers: Dict[str, Labeller] = {}
    errors = []
    for example in examples:
        if example.class_set not in labellers:
            labellers[example.class_set] = builtin_labeller(example.class_set)
        found = set(labellers[example.class_set].find(example.text))
        gold = set(example.gold)
        score = scores.setdefault(example.class_set, Score())
        score.sentences += 1
        score.tp += len(found & gold)
        score.fp += len(found - gold)
        score.fn += len(gold - found)
        if found != gold:
            errors.append((example, sorted(found)))
    return scores, errors


def total(scores: Dict[str, Score]) -> Score:
    """The micro counts over all class sets."""
    result = Score()
    for score in scores.values():
        result.tp += score.tp
        result.fp += score.fp
        result.fn += score.fn
        result.sentences += score.sentences
    return result
