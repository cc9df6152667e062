"""Sentence labelling: lemmatised names and synonyms, multi-word names first, class order."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiprompt.classnames import builtin_class_set
from llm_knowledge.labelling import Labeller, lemma, lemmas
from llm_knowledge.synonyms import BUILTIN_SYNONYMS, default_synonyms


@pytest.mark.parametrize("word, expected", [
    ("dogs", "dog"), ("buses", "bus"), ("bus", "bus"), ("glasses", "glasses"),
    ("boxes", "box"), ("dishes", "dish"), ("puppies", "puppy"), ("knives", "knife"),
    ("people", "person"), ("mice", "mouse"), ("sheep", "sheep"), ("horses", "horse"),
    ("ties", "tie"), ("skis", "ski"), ("tomatoes", "tomato"), ("grass", "grass"),
    ("scissors", "scissors"), ("is", "is"),
])
def test_lemma(word, expected):
    assert lemma(word) == expected


def test_lemmas_split_on_hyphens_and_punctuation():
    assert lemmas("Two Hot-Dogs, please!") == ["two", "hot", "dog", "please"]


def test_multi_word_names_win_and_consume_their_words():
    labeller = Labeller(builtin_class_set("coco"), default_synonyms(builtin_class_set("coco"),
                                                                    "coco"))
    assert labeller.find("Two teddy bears sit next to a hot dog.") == ["hot dog", "teddy bear"]
    assert labeller.find("A bear and a dog.") == ["dog", "bear"]  # class order, not text order


def test_label_names_prompt_names_and_synonyms():
    coco = builtin_class_set("coco")
    labeller = Labeller(coco, default_synonyms(coco, "coco"))
    assert labeller.find("The television is on") == ["tv"]
    assert labeller.find("A man holds his smartphone near the fridge.") == [
        "person", "cell phone", "refrigerator"]
    voc = builtin_class_set("voc2007")
    labeller = Labeller(voc, default_synonyms(voc, "voc2007"))
    assert labeller.find("A family at the dining table watches the TV monitor.") == [
        "diningtable", "tvmonitor"]
    assert labeller.find("Potted plants on a sofa") == ["pottedplant", "sofa"]


def test_no_false_match_inside_words():
    labeller = Labeller(["cat", "car"])
    assert labeller.find("A category of cartoons about a scar.") == []


def test_synonyms_for_unknown_classes_are_an_error():
    with pytest.raises(KeyError, match="unicorn"):
        Labeller(["dog"], {"unicorn": ["horn horse"]})


def test_builtin_synonym_lists_cover_every_label():
    for name, table in BUILTIN_SYNONYMS.items():
        assert set(table) == set(builtin_class_set(name))


@given(st.text())
def test_find_never_crashes_and_returns_known_classes_in_order(text):
    classes = builtin_class_set("nuswide")
    labeller = Labeller(classes, default_synonyms(classes, "nuswide"))
    found = labeller.find(text)
    assert found == sorted(set(found), key=classes.index)
