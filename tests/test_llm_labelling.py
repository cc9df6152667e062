"""Sentence labelling: lemmatised names and synonyms, multi-word names first, class order."""

import importlib.util
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiprompt.classnames import builtin_class_set
from llm_knowledge.labelling import ContextRules, Labeller, lemma, lemmas
from llm_knowledge.labelling_eval import evaluate, read_examples, total
from llm_knowledge.synonyms import BUILTIN_SYNONYMS, default_synonyms

REPO = Path(__file__).resolve().parents[1]
EVAL_FILE = REPO / "tests" / "data" / "labelling_eval.tsv"
HELDOUT_FILE = REPO / "tests" / "data" / "labelling_heldout2.tsv"


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


# ------------------------------------------------------------------ precision first
def _builtin(name):
    classes = builtin_class_set(name)
    return Labeller(classes, default_synonyms(classes, name))


@pytest.mark.parametrize("class_set, text, expected", [
    # the misreadings measured in issue 10, each now read as a person would
    ("coco", "An adult giraffe can grow up to 5.5 meters tall.", ["giraffe"]),
    ("coco", "The bicycle seat is soft.", ["bicycle"]),
    ("coco", "See the table of contents.", []),
    ("coco", "A jet of water shoots up.", []),
    ("coco", "The baseball player waits.", ["person"]),
    ("coco", "Bear in mind that it rains.", []),
    ("nuswide", "Snow falls gently on the fox.", ["fox", "snow"]),
    ("nuswide", "They mount a wave of protests.", ["protest"]),
    # the same words where they do name the class
    ("coco", "A bear and a parking meter near the dining table.",
     ["parking meter", "bear", "dining table"]),
    ("coco", "He kicks the football to the baseball player.", ["person", "sports ball"]),
    ("coco", "Two oranges and a mouse next to the keyboard.", ["orange", "mouse", "keyboard"]),
    ("coco", "An orange cat and an orange.", ["cat", "orange"]),
    ("coco", "The sink in the kitchen; the ship begins to sink.", ["boat", "sink"]),
    # kinds of ambiguity generalised from the first held-out set
    ("coco", "The table lists the scores of each team.", []),  # a table of data
    ("coco", "The report's summary table is on page two.", []),
    ("coco", "Apple unveiled its new laptop.", ["laptop"]),  # the company
    ("coco", "She bought a phone from Apple yesterday.", ["cell phone"]),  # a name inside
    ("coco", "Apples and a phone lie on the desk.", ["apple", "cell phone"]),
    ("voc2007", "The plane taxis to the runway.", ["aeroplane"]),  # a verb after its subject
    ("voc2007", "A taxi waits outside the hotel.", ["car"]),
    ("voc2007", "A bulldog naps beside the farmer.", ["dog", "person"]),  # closed compounds
    ("nuswide", "The sun rose above the lake.", ["lake", "sun"]),  # "rose", the verb
    ("nuswide", "A rose blooms by the gate.", ["flowers"]),
    ("nuswide", "Tourists admire the falls.", ["person", "waterfall"]),  # noun after "the"
    ("nuswide", "Rain falls on the village.", ["town"]),
    ("nuswide", "Herbs grow in the cottage garden.", ["garden"]),  # a noun as modifier
    ("nuswide", "A tourist attraction draws crowds.", ["person"]),
    ("coco", "The hot dog stand sells drinks.", []),
    ("nuswide", "The show's running time is short.", []),
    ("nuswide", "The train of her wedding dress is long.", []),  # not the vehicle
    ("coco", "A keeper feeds the giraffe.", ["person", "giraffe"]),  # role nouns
    # comparisons, young of other species, measure phrases
    ("coco", "An elephant can be as heavy as a small truck.", ["elephant"]),
    ("coco", "The dog is smaller than the cat.", ["cat", "dog"]),  # a particular cat
    ("coco", "A whale calf is larger than a car.", []),
    ("coco", "A bear the size of a car.", ["bear"]),
    ("nuswide", "A bull elk crosses the road.", ["elk", "road"]),
    ("nuswide", "A snow leopard rests on a rock.", ["rocks"]),
    ("nuswide", "The birds are building a nest.", ["birds"]),
    ("nuswide", "The building faces the river.", ["buildings", "water"]),
])
def test_context_rules_drop_other_meanings(class_set, text, expected):
    assert _builtin(class_set).find(text) == expected


def _rules(**tables):
    """Context rules made only of the given tables (the rest empty)."""
    return ContextRules.from_tables(tables.pop("vetoes", {}), tables.pop("verbs", ()), (), {},
                                    tables.pop("verb_leads", ()), tables.pop("objects", ()),
                                    (), **tables)


def test_avoids_drops_a_word_whose_other_sense_is_in_the_sentence():
    labeller = Labeller(["dining table"], {"dining table": ["table"]},
                        _rules(avoids={"table": ["report", "column"]}))
    assert labeller.find("The columns of the table.") == []
    assert labeller.find("See the table in the reports.") == []  # lemmatised: report
    assert labeller.find("The table is set for dinner.") == ["dining table"]


def test_after_determiner_keeps_a_mostly_verb_noun_only_after_a_determiner():
    labeller = Labeller(["waterfall"], {"waterfall": ["falls"]},
                        _rules(after_determiner=["falls"], determiners=["the", "twin"]))
    assert labeller.find("The twin falls roar.") == ["waterfall"]
    assert labeller.find("We hiked to the falls.") == ["waterfall"]
    assert labeller.find("Snow falls.") == []
    assert labeller.find("Falls.") == []  # nothing before it


def test_proper_names_are_dropped_when_capitalised_inside_a_sentence():
    labeller = Labeller(["apple", "dog"], rules=_rules(proper_names=["apple"]))
    assert labeller.find("She works at Apple.") == []
    assert labeller.find("Apples are red.") == ["apple"]  # a capital that starts a sentence
    assert labeller.find("Lunch: Apple slices.") == ["apple"]  # ... or follows a colon
    assert labeller.find("We ate an APPLE and saw a Dog.") == ["apple", "dog"]


def test_measure_phrase_after_a_verb_homograph_keeps_the_noun():
    labeller = Labeller(["bear"], rules=_rules(verbs=["bear"], verb_leads=["they"],
                                               objects=["the"], measures=["size"]))
    assert labeller.find("A bear the size of a car.") == ["bear"]
    assert labeller.find("Ropes bear the load.") == []
    assert labeller.find("They bear it.") == []


@pytest.mark.parametrize("text, expected", [
    ("A dog as big as a horse.", ["dog"]),
    ("A dog as big as a small horse.", ["dog"]),  # an adjective between
    ("A dog as big as the horse.", ["dog", "horse"]),  # a particular horse
    ("A dog bigger than the old horse.", ["dog", "horse"]),
    ("It is as big as, well, a horse.", ["horse"]),  # punctuation ends the comparison
    ("As big as a large grey old horse.", ["horse"]),  # more than COMPARISON_GAP words
])
def test_comparisons_drop_the_standard_compared_with(text, expected):
    labeller = Labeller(["dog", "horse"], rules=_rules(
        comparisons=["as big as", "bigger than"], specific=["the"]))
    assert labeller.find(text) == expected


def test_vetoes_of_phrases_that_lemmatise_alike_are_joined():
    labeller = Labeller(["castle"], rules=_rules(vetoes={
        "castle": {"before": ["sand"]}, "castles": {"after": ["in the air"]}}))
    assert labeller.find("A sand castle and castles in the air.") == []
    assert labeller.find("Two castles on a hill.") == ["castle"]


def test_context_rules_can_be_switched_off():
    coco = builtin_class_set("coco")
    plain = Labeller(coco, default_synonyms(coco, "coco"), rules=ContextRules())
    assert plain.find("Bear in mind the table of contents.") == ["bear", "dining table"]


def test_hand_labelled_set_meets_the_precision_and_recall_bar():
    examples = read_examples(EVAL_FILE)
    assert len(examples) >= 300
    per_set = {name: sum(e.class_set == name for e in examples) for name in BUILTIN_SYNONYMS}
    assert min(per_set.values()) >= 50, per_set
    scores, errors = evaluate(examples)
    overall = total(scores)
    report = "\n".join(f"line {e.line}: gold {list(e.gold)} found {found}: {e.text}"
                       for e, found in errors)
    # the bar is the measured error count (issue 28): one new mistake fails it
    errors_now = {name: (s.fp, s.fn) for name, s in scores.items()}
    assert all(errors_now[name][0] <= fp and errors_now[name][1] <= fn
               for name, (fp, fn) in MEASURED_ERRORS.items()), (errors_now, report)
    assert overall.precision >= 0.998 and overall.recall >= 0.998, report  # 524 of 525 each


# false positives and false negatives on labelling_eval.tsv per class set, measured (issue 28)
MEASURED_ERRORS = {"coco": (0, 0), "voc2007": (0, 1), "nuswide": (1, 0)}


def test_heldout_set_is_new_and_covers_every_class_set():
    """labelling_heldout2.tsv was written after the rules were final and measured once
    (P 0.955 / R 0.917, below the bar, so no test asserts a figure on it)."""
    heldout = read_examples(HELDOUT_FILE)
    assert len(heldout) >= 150
    per_set = {name: sum(e.class_set == name for e in heldout) for name in BUILTIN_SYNONYMS}
    assert min(per_set.values()) >= 40, per_set
    tuned_on = {e.text for e in read_examples(EVAL_FILE)}
    assert not [e.text for e in heldout if e.text in tuned_on]


def test_evaluation_counts_labels_micro(tmp_path):
    data = tmp_path / "set.tsv"
    data.write_text("# comment\n"
                    "coco\tdog,cat\tA dog sleeps.\n"  # tp 1 (dog), fn 1 (cat)
                    "coco\t-\tA bus and a car.\n"  # fp 2
                    "voc2007\tsofa\tThe couch is soft.\n")  # tp 1
    scores, errors = evaluate(read_examples(data))
    assert (scores["coco"].tp, scores["coco"].fp, scores["coco"].fn) == (1, 2, 1)
    assert (scores["voc2007"].tp, scores["voc2007"].fp, scores["voc2007"].fn) == (1, 0, 0)
    overall = total(scores)
    assert overall.precision == pytest.approx(2 / 4) and overall.recall == pytest.approx(2 / 3)
    assert [e.line for e, _ in errors] == [2, 3]


@pytest.mark.parametrize("line, message", [
    ("coco\tdog", "set.tsv:1: expected 3 tab-separated fields"),
    ("cocoa\tdog\tA dog.", "set.tsv:1: class set 'cocoa' is not one of"),
    ("coco\tdoggo\tA dog.", "set.tsv:1: labels ['doggo'] are not in class set 'coco'"),
])
def test_evaluation_file_errors_name_the_line(tmp_path, line, message):
    data = tmp_path / "set.tsv"
    data.write_text(line + "\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        read_examples(data)


def test_eval_script_prints_both_figures_per_class_set_for_both_sets(capsys):
    spec = importlib.util.spec_from_file_location("eval_labeller", REPO / "scripts" / "eval_labeller.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([]) == 0
    out = capsys.readouterr().out
    tables = out.split("\n\n")
    assert [table.splitlines()[0] for table in tables] == [str(EVAL_FILE), str(HELDOUT_FILE)]
    for path, table in zip((EVAL_FILE, HELDOUT_FILE), tables):
        scores = evaluate(read_examples(path))[0]
        assert len(scores) == 3
        for name, score in scores.items():
            assert re.search(rf"^{name}\s+{score.sentences}\s+{score.tp}\s+{score.fp}\s+"
                             rf"{score.fn}\s+{score.precision:.3f}\s+{score.recall:.3f}$",
                             table, re.MULTILINE)


# ------------------------------------------------------------------ the rules one by one
def test_longest_match_first_hot_dog_is_not_a_dog():
    assert _builtin("coco").find("A hot dog.") == ["hot dog"]
    assert _builtin("coco").find("Hot dogs.") == ["hot dog"]  # plural of the last word
    # with no context rules at all: the longest phrase at a position wins on its own
    assert Labeller(["dog", "hot dog"], rules=ContextRules()).find("A hot dog.") == ["hot dog"]
    assert Labeller(["dog", "hot dog"], rules=ContextRules()).find("A hot day, a dog.") == ["dog"]


def test_a_match_consumes_its_span():
    # "dog" is inside "hot dog" and starts "dog stand": once "hot dog" matched, it is used up
    labeller = Labeller(["hot dog", "dog stand"], rules=ContextRules())
    assert labeller.find("A hot dog stand.") == ["hot dog"]
    assert labeller.find("A dog stand.") == ["dog stand"]
    assert Labeller(["teddy bear", "bear"], rules=ContextRules()).find("A teddy bear.") == ["teddy bear"]


def test_a_dropped_match_consumes_only_its_first_word():
    # the veto drops "hot dog" before "stand"; matching goes on at "dog", which names a dog
    labeller = Labeller(["hot dog", "dog"], rules=_rules(vetoes={"hot dog": {"after": ["stand"]}}))
    assert labeller.find("A hot dog stand.") == ["dog"]
    assert labeller.find("A hot dog.") == ["hot dog"]


def test_veto_before_gummy_bears_are_no_bears():
    coco = _builtin("coco")
    assert coco.find("Gummy bears are sweet.") == []
    assert coco.find("Brown bears are big.") == ["bear"]
    labeller = Labeller(["bear"], rules=_rules(vetoes={"bear": {"before": ["gummy"], "after": ["in mind"]}}))
    assert labeller.find("Gummy bears.") == []  # a word before it
    assert labeller.find("Bear in mind.") == []  # words after it (lemmatised)
    assert labeller.find("Bears in the woods, a gummy.") == ["bear"]  # neither next to it


def test_needs_keeps_a_phrase_only_with_one_of_its_words_in_the_sentence():
    rules = ContextRules.from_tables({}, (), (), {"mouse": ["computer", "keyboards"]}, (), (), ())
    labeller = Labeller(["mouse", "keyboard"], rules=rules)
    assert labeller.find("A mouse ran.") == []
    assert labeller.find("A mouse by the computer.") == ["mouse"]
    assert labeller.find("Mice near a keyboard.") == ["mouse", "keyboard"]  # needs words lemmatised
    assert _builtin("coco").find("A mouse ran.") == []
    assert _builtin("coco").find("A mouse next to the keyboard.") == ["mouse", "keyboard"]


def test_nouns_only_keeps_a_colour_word_when_plural_or_not_before_a_noun():
    rules = ContextRules.from_tables({}, (), ("orange",), {}, (), (), ("on", "and"))
    labeller = Labeller(["orange"], rules=rules)
    assert labeller.find("An orange sky.") == []  # a noun follows: the colour
    assert labeller.find("An orange on the table.") == ["orange"]  # a function word follows
    assert labeller.find("An orange.") == ["orange"]  # at a phrase end
    assert labeller.find("Oranges glow.") == ["orange"]  # plural


def test_plurals_are_matched_by_their_lemma():
    assert _builtin("coco").find("Oranges fill the bowl.") == ["bowl", "orange"]  # class order
    plain = Labeller(["bus", "knife", "person", "mouse", "glass", "puppy"], rules=ContextRules())
    assert plain.find("Two buses, three knives and many people.") == ["bus", "knife", "person"]
    assert plain.find("The mice and the puppies.") == ["mouse", "puppy"]
    assert plain.find("A glass of water.") == ["glass"]  # a word ending in s that is no plural


@pytest.mark.parametrize("word, expected", [
    ("abs", "abs"), ("lies", "lie"), ("flies", "fly"), ("cities", "city"), ("classes", "class"),
    ("churches", "church"), ("buzzes", "buzz"), ("toes", "toe"), ("floes", "floe"), ("oboes", "oboe"),
    ("heroes", "hero"), ("echoes", "echo"), ("fungus", "fungus"), ("analysis", "analysis"), ("boss", "boss"),
])
def test_lemma_at_each_rules_edge(word, expected):
    """Three letters are kept; -ies from five letters; -sses, -ches, -zzes lose -es; -oes loses
    -es from six letters (a five-letter -oes word is a singular in -oe + s); -us, -is, -ss stay."""
    assert lemma(word) == expected


def test_to_leads_a_verb_unless_it_ends_a_preposition():
    labeller = Labeller(["sink"], rules=_rules(verbs=("sink",), verb_leads=("to",), objects=("it",)))
    assert labeller.find("I want to sink.") == []  # "to" + verb
    assert labeller.find("To sink.") == []  # "to" first: nothing before it to make it a preposition
    assert labeller.find("Next to sink.") == ["sink"]  # "next to" (the earliest place: words 0 and 1)
    assert labeller.find("A cat sat close to sink.") == ["sink"]


def test_a_verb_homograph_first_is_led_by_nothing():
    """At the start the word before is no word (not the sentence's last one)."""
    labeller = Labeller(["sink"], rules=_rules(verbs=("sink",), verb_leads=("can",)))
    assert labeller.find("Sink, you can") == ["sink"]


def test_a_measure_right_at_the_end_still_counts():
    labeller = Labeller(["bear"], rules=_rules(verbs=("bear",), objects=("the",), measures=("size",)))
    assert labeller.find("A bear the size") == ["bear"]  # "the size" ends the text
    assert labeller.find("I bear the cost") == []


def test_a_proper_name_right_after_the_first_word_and_acronyms():
    labeller = Labeller(["apple", "tv"], rules=_rules(proper_names=("apple", "tv")))
    assert labeller.find("Buy Apple shares.") == []  # capitalised inside the sentence: the company
    assert labeller.find("Apple pie.") == ["apple"]  # capitalised as the first word says nothing
    assert labeller.find("Two TVs here.") == ["tv"]  # all capitals (an acronym) is no name


def test_comparison_gap_and_a_one_word_comparison_first():
    labeller = Labeller(["dog"], rules=_rules(comparisons=("bigger than", "like")))
    assert labeller.find("It is bigger than a small dog.") == []  # two words between
    assert labeller.find("It is bigger than a very small dog.") == ["dog"]  # three: beyond COMPARISON_GAP
    assert labeller.find("Like a dog.") == []  # the comparison is the first word


def test_the_earlier_class_keeps_a_phrase_that_two_classes_claim_and_empty_phrases_are_skipped():
    labeller = Labeller(["car", "automobile"], {"automobile": ["car", "!!!"]}, rules=ContextRules())
    assert labeller.find("A car.") == ["car"] and labeller.find("An automobile.") == ["automobile"]
    assert () not in labeller._phrases


def test_no_classes_find_nothing():
    assert Labeller([]).find("A dog.") == []


def test_nouns_only_reads_a_singular_in_s_as_singular():
    labeller = Labeller(["glass"], rules=ContextRules.from_tables({}, (), ("glass",), {}, (), (), ()))
    assert labeller.find("A glass door.") == []  # not plural: an adjective before a noun
    assert labeller.find("A glass.") == ["glass"]


def test_a_nouns_only_phrase_at_the_very_end_with_longer_phrases_about():
    labeller = Labeller(["orange", "hot dog"], rules=ContextRules.from_tables({}, (), ("orange",), {}, (), (), ()))
    assert labeller.find("I ate an orange") == ["orange"]
    assert labeller.find("A hot dog") == ["hot dog"]


def test_rules_digest_is_the_hash_of_the_labeller_and_its_tables():
    import hashlib

    from llm_knowledge import labelling, synonyms
    from llm_knowledge.labelling import rules_digest

    expected = hashlib.sha256(Path(labelling.__file__).read_bytes() + Path(synonyms.__file__).read_bytes())
    assert rules_digest() == expected.hexdigest()
