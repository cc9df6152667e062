"""The tolerant answer parser: the messy shapes LLM answers come in, and a fuzz test."""

from hypothesis import given, settings
from hypothesis import strategies as st

from llm_knowledge.labelling import Labeller
from llm_knowledge.parsing import parse_attributes, parse_groups, parse_sentences


def test_numbered_list_with_preamble_markdown_and_repeats():
    answer = ("Sure! Here are 4 attributes of a dog:\n1. **Color**: brown or black\n"
              "2) Size (small to large)\n- fur texture\n* color\n5. 颜色\n")
    parsed = parse_attributes(answer, limit=4)
    assert parsed.items == ["color", "size", "fur texture"]
    assert parsed.rejected == {"preamble": 1, "duplicate": 1, "not_english": 1}
    assert not parsed.refused


def test_one_long_comma_line_and_limit():
    parsed = parse_attributes("Here are some: color, size; shape and texture, fur, color", 3)
    assert parsed.items == ["color", "size", "shape"]
    assert parsed.rejected["surplus"] == 2
    assert parsed.rejected["duplicate"] == 1


def test_inline_numbering_and_too_long_items():
    parsed = parse_attributes("1. speed 2. engine power 3. the way it looks when it is parked")
    assert parsed.items == ["speed", "engine power"]
    assert parsed.rejected == {"too_long": 1}


def test_refusal_is_flagged_not_parsed():
    for answer in ["I'm sorry, but I can't help with that.", "As an AI language model, no."]:
        assert parse_attributes(answer).refused
        assert parse_sentences(answer).refused


def test_sentences_from_run_on_line_with_cjk_and_labels():
    answer = ("Sure, here are three sentences: A dog runs on the beach. The dog sleeps on a "
              "red sofa! 狗在沙滩上跑。\n4. Dog and cat: \"A dog chases a cat across the yard.\"\n"
              "5. Short one.\n6. A dog runs on the beach.")
    parsed = parse_sentences(answer, limit=5)
    assert parsed.items == ["A dog runs on the beach.", "The dog sleeps on a red sofa!",
                            "A dog chases a cat across the yard."]
    assert parsed.rejected["not_english"] == 1
    assert parsed.rejected["too_short"] == 1
    assert parsed.rejected["duplicate"] == 1


def test_too_few_items_is_not_an_error():
    parsed = parse_sentences("A dog runs on the beach.", limit=100)
    assert parsed.items == ["A dog runs on the beach."]


def test_groups_keep_known_classes_once_and_drop_singletons():
    labeller = Labeller(["person", "dog", "car", "bus", "fork", "knife"],
                        {"person": ["man"], "car": ["automobile"]})
    answer = ("Here are the groups:\nStreet: automobiles, buses, a man\n"
              "Kitchen: forks, knives, spoons\nPets: dogs, man\nOther: airplane\nAlone: dog")
    parsed = parse_groups(answer, labeller, labeller.classnames)
    assert parsed.items == [["person", "car", "bus"], ["fork", "knife"]]
    assert parsed.rejected["already_grouped"] == 1  # "man" in Pets
    assert parsed.rejected["singleton_group"] == 2  # Pets -> dog, Alone -> dog
    assert parsed.rejected["no_known_class"] == 1  # airplane


def test_groups_only_hold_the_classes_asked_about():
    labeller = Labeller(["dog", "cat", "car"])
    parsed = parse_groups("pets: dog, cat, car", labeller, ["dog", "cat"])
    assert parsed.items == [["dog", "cat"]]
    assert parsed.rejected["not_in_question"] == 1


_messy = st.lists(
    st.one_of(
        st.text(),
        st.sampled_from(["1.", "2)", "-", "*", "•", "**", ":", ",", ";", "\n", "。", "狗",
                         "Sure! Here are:", "I'm sorry", "dog", "hot dog", "cat", " and "]),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_messy, st.integers(min_value=0, max_value=5))
def test_parsers_never_crash_and_respect_limits(answer, limit):
    for parse in (parse_attributes, parse_sentences):
        parsed = parse(answer, limit)
        if limit:
            assert len(parsed.items) <= limit
        assert len({item.lower() for item in parsed.items}) <= len(parsed.items)
        assert all(item.strip() for item in parsed.items)
        assert all(count > 0 for count in parsed.rejected.values())
    labeller = Labeller(["dog", "cat", "hot dog"])
    groups = parse_groups(answer, labeller, ["dog", "cat", "hot dog"])
    members = [label for group in groups.items for label in group]
    assert len(members) == len(set(members))
    assert all(len(group) >= 2 for group in groups.items)
