"""The questions of the knowledge stage (METHOD.md §2), as structured objects and as text.

A `Question` carries both what is asked (its `kind` and the classes, attribute and count it
is about) and `prompt`, the text a real LLM receives. Back-ends that answer from tables
(e.g. the toy world's oracle) read the structured fields; LLM back-ends send `prompt`.
"""

from dataclasses import dataclass, replace
from typing import Optional, Tuple

from hiprompt.classnames import prompt_name

KINDS = (
    "common_attributes",  # Π1a
    "class_attributes",  # Π1b
    "describe",  # Π2 (coarse and fine descriptions)
    "filter_attributes",  # Π3
    "coarse_groups",  # Π4
    "fine_groups",  # Π4b
    "relation",  # Π5
)


@dataclass(frozen=True)
class Question:
    """One question to a back-end.

    kind: one of `KINDS`; prompt: the text sent to an LLM; classes: the label names the
    question is about (all classes for Π1a/Π4, the classes of one coarse group for Π4b,
    one class for Π1b/Π2/Π3, two for Π5); attribute: the attribute of a Π2 question;
    count: how many items are asked for; attributes: the candidate list of a Π3 question.
    temperature, seed: sampling that overrides the back-end's own settings for this
    question (a top-up attempt, a group re-ask); None keeps the back-end's settings.
    """

    kind: str
    prompt: str
    classes: Tuple[str, ...]
    attribute: Optional[str] = None
    count: Optional[int] = None
    attributes: Optional[Tuple[str, ...]] = None
    temperature: Optional[float] = None
    seed: Optional[int] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown question kind {self.kind!r}; expected one of {KINDS}")

    @property
    def sampling(self) -> Optional[dict]:
        """The sampling override as part of the answer cache's key, or None."""
        if self.temperature is None and self.seed is None:
            return None
        return {"temperature": self.temperature, "seed": self.seed}

    def resampled(self, temperature: float, seed: int) -> "Question":
        """The same question, to be answered with sampling at `temperature` from `seed`."""
        return replace(self, temperature=temperature, seed=seed)


_LIST_HINT = "Answer with a numbered list, one item per line, and nothing else."
_GROUP_HINT = (
    "Answer with one group per line, written as 'group name: word, word, word', using only "
    "the words given above."
)


def _word_list(classes) -> str:
    return ", ".join(prompt_name(c) for c in classes)


def common_attributes(classes, count: int) -> Question:
    prompt = (
        f"{_word_list(classes)}, please summarize {count} attributes that may be common to "
        f"the above {len(classes)} words. Each attribute is a short word or phrase. {_LIST_HINT}"
    )
    return Question("common_attributes", prompt, tuple(classes), count=count)


def class_attributes(label: str, count: int) -> Question:
    prompt = (
        f"Please summarize {count} attributes of {prompt_name(label)}. Each attribute is a "
        f"short word or phrase. {_LIST_HINT}"
    )
    return Question("class_attributes", prompt, (label,), count=count)


def describe(label: str, attribute: str, count: int) -> Question:
    prompt = (
        f"Please help me generate {count} different sentences about {prompt_name(label)} "
        f"from the angle of the {attribute}. {_LIST_HINT}"
    )
    return Question("describe", prompt, (label,), attribute=attribute, count=count)


def filter_attributes(label: str, attributes, count: int) -> Question:
    prompt = (
        f"{', '.join(attributes)}, please delete the above attribute words given that are "
        f"not very relevant to {prompt_name(label)}. Finally, {count} attribute words remain. "
        f"{_LIST_HINT}"
    )
    return Question(
        "filter_attributes", prompt, (label,), count=count, attributes=tuple(attributes)
    )


def coarse_groups(classes) -> Question:
    prompt = (
        f"{_word_list(classes)}, categorize the above words according to possible common "
        f"occurrences in a scene. {_GROUP_HINT}"
    )
    return Question("coarse_groups", prompt, tuple(classes))


def fine_groups(classes) -> Question:
    prompt = (
        f"{_word_list(classes)}, split the above words into smaller groups of things that "
        f"appear together very often in one scene or have similar attributes. {_GROUP_HINT}"
    )
    return Question("fine_groups", prompt, tuple(classes))


def relation(first: str, second: str, count: int) -> Question:
    prompt = (
        f"Generate {count} different descriptive sentences for a scene containing "
        f"{prompt_name(first)} and {prompt_name(second)}. {_LIST_HINT}"
    )
    return Question("relation", prompt, (first, second), count=count)
