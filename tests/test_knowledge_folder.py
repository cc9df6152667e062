"""The knowledge-folder reader (`hiprompt.data.knowledge`): every malformed or forbidden file is
an error naming the file, line or group and what was expected; unused corpus lines are
counted by reason; a folder whose files disagree with its manifest is refused."""

import json

import pytest
from conftest import write_knowledge_folder

from hiprompt.data.knowledge import KnowledgeFolder
from hiprompt.data.knowledge import write_knowledge_folder as write_folder

CLASSES = ["dog", "cat", "car", "bus"]
GROUPS = {"coarse": [["dog", "cat"], ["car", "bus"]], "fine": [["car", "bus"]]}
SENTENCES = [("a dog and a cat.", ["dog", "cat"], "relation"), ("a red car.", ["car"], "coarse")]


def folder(tmp_path, classnames=CLASSES, groups=GROUPS, sentences=SENTENCES):
    return write_knowledge_folder(tmp_path / "knowledge", classnames, groups, sentences)


def error_of(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def write_lines(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


# ------------------------------------------------------------------ corpus lines
def line(text="a dog on the sofa.", kind="coarse", asked=("dog",), found=("dog",)):
    return {"text": text, "asked": list(asked), "found": list(found), "kind": kind, "question": "q"}


def test_unused_corpus_lines_are_counted_by_reason(tmp_path):
    knowledge = folder(tmp_path)
    write_lines(knowledge / "corpus.jsonl", [
        line("a dog on the sofa."),
        line("a dog in a scene.", kind="scene"),  # unknown kind
        line("", kind="coarse"),  # empty text
        line("   ", kind="relation"),  # blank text
        line("a cat and a bus.", kind="relation", asked=["cat", "bus"], found=["cat", "bus"]),
        line("something else.", asked=[], found=[]),  # no class at all
        line("only a bus here.", asked=["bus"], found=["bus"]),  # not among the classes trained
    ])
    corpus = KnowledgeFolder(knowledge).corpus(["dog", "cat"], kinds="coarse")
    assert corpus.texts == ["a dog on the sofa."]
    assert corpus.dropped == {"kind_not_selected": 2, "unknown_kind": 1, "empty_text": 1,
                              "no_label": 2}
    every = KnowledgeFolder(knowledge).corpus()
    assert every.texts == ["a dog on the sofa.", "a cat and a bus.", "only a bus here."]
    assert every.dropped == {"kind_not_selected": 0, "unknown_kind": 1, "empty_text": 2,
                             "no_label": 1}


@pytest.mark.parametrize("record, expected", [
    (line(text=None), "'text' must be a string, got null"),
    (line(text=3), "'text' must be a string, got a number"),
    (line(text=["a dog."]), "'text' must be a string, got a list"),
    (line(kind=None), "'kind' must be one of ('coarse', 'fine', 'relation', 'caption'), got null"),
    ({**line(), "asked": "dog"}, "'asked' must be a list of class names, got \"dog\""),
    (line(found=["dog", ["cat"]]), "'found' must be a list of class names, got [\"dog\", [\"cat\"]]"),
    (line(asked=["zebra"]), "'asked' names classes not in classnames.txt: ['zebra']"),
    (["a dog."], "expected a JSON object with text, kind, asked, found; got a list"),
    ("{\"text\": \"a dog", "not valid JSON"),
])
def test_malformed_corpus_lines_name_file_line_and_expectation(tmp_path, record, expected):
    knowledge = folder(tmp_path)
    corpus = knowledge / "corpus.jsonl"
    write_lines(corpus, [line(), "", record])
    message = error_of(lambda: KnowledgeFolder(knowledge).corpus())
    assert message.startswith(f"{corpus}, line 3: {expected}"), message


# ------------------------------------------------------------------ groups.json
@pytest.mark.parametrize("groups, expected", [
    ([["dog", "cat"]], 'expected {"coarse": [[class, ...], ...], "fine": [[class, ...], ...]}, '
                       "got a list"),
    (None, 'expected {"coarse": [[class, ...], ...], "fine": [[class, ...], ...]}, got null'),
    ({"Coarse": [["dog", "cat"]]}, "unknown keys ['Coarse']"),
    ({"coarse": {"home": ["dog"]}}, "'coarse' must be a list of groups (lists of class names), "
                                    "got an object"),
    ({"coarse": [["dog", ["cat"]]]}, 'coarse group 1 is ["dog", ["cat"]]: expected a list of '
                                     "class names (strings)"),
    ({"coarse": [["dog", "zebra"]]}, "coarse group 1 ['dog', 'zebra'] names classes not in "
                                     "classnames.txt: ['zebra']"),
    ({"coarse": [["dog", "cat", "dog"]]}, "coarse group 1 ['dog', 'cat', 'dog'] names ['dog'] "
                                          "more than once"),
    ({"coarse": [["dog", "cat"], ["cat", "car"]]}, "'cat' is in coarse groups 1 and 2: a class "
                                                   "may be in at most one group per level"),
    ({"coarse": [["dog", "cat"], ["car", "bus"]], "fine": [["cat", "car"]]},
     "fine group 1 ['cat', 'car'] is not inside one coarse group ('cat' in coarse group 1, 'car' "
     "in coarse group 2): every fine group must lie inside one coarse group"),
    ({"coarse": [["dog", "cat"]], "fine": [["car", "bus"]]},
     "fine group 1 ['car', 'bus'] is not inside one coarse group ('car' in no coarse group, 'bus' "
     "in no coarse group)"),
])
def test_forbidden_groups_are_refused_naming_file_and_group(tmp_path, groups, expected):
    knowledge = folder(tmp_path)
    (knowledge / "groups.json").write_text(json.dumps(groups))
    message = error_of(lambda: KnowledgeFolder(knowledge))
    assert message.startswith(f"{knowledge / 'groups.json'}: {expected}"), message


def test_groups_of_the_contract_are_read(tmp_path):
    groups = {"coarse": [["dog", "cat"], [], ["car", "bus"]], "fine": [["car", "bus"]]}
    assert KnowledgeFolder(folder(tmp_path, groups=groups)).groups == {
        "coarse": [["dog", "cat"], ["car", "bus"]], "fine": [["car", "bus"]]}


# ------------------------------------------------------------------ class names
def test_one_class_folder_says_the_ranking_loss_needs_two(tmp_path):
    knowledge = folder(tmp_path, classnames=["dog"], groups={}, sentences=[("a dog.", ["dog"], "coarse")])
    assert error_of(lambda: KnowledgeFolder(knowledge)) == (
        f"{knowledge / 'classnames.txt'}: 1 class (dog): the ranking loss needs at least two "
        "classes (it ranks a sentence's classes above the others)")
    two = folder(tmp_path)
    assert error_of(lambda: KnowledgeFolder(two).corpus(["cat"])).startswith(
        f"{two}: training over: 1 class (cat): the ranking loss needs at least two classes")


def test_repeated_class_name_is_refused(tmp_path):
    knowledge = folder(tmp_path)
    (knowledge / "classnames.txt").write_text("dog\ncat\n\ndog\n")
    assert error_of(lambda: KnowledgeFolder(knowledge)) == (
        f"{knowledge / 'classnames.txt'}, line 4: class 'dog' repeats line 1")


def test_classnames_are_read_as_every_class_list(tmp_path):
    """A byte-order mark, `#` lines and blank lines, as in any class list (tests/test_data_custom.py)."""
    knowledge = folder(tmp_path)
    (knowledge / "classnames.txt").write_bytes("\ufeff# animals\ndog\ncat\n\n# vehicles\ncar\nbus\n".encode())
    assert KnowledgeFolder(knowledge).classnames == ["dog", "cat", "car", "bus"]
    (knowledge / "classnames.txt").write_text("# nothing yet\n\n")
    assert error_of(lambda: KnowledgeFolder(knowledge)).startswith(f"{knowledge / 'classnames.txt'}: no class names")


@pytest.mark.parametrize("name", ["#dog", " dog", "dog\ncat", ""])
def test_a_class_name_that_would_not_read_back_is_not_written(tmp_path, name):
    with pytest.raises(ValueError, match="would not read back from classnames.txt"):
        write_folder(tmp_path / "out", ["cat", name], {}, {"n_classes": 2})
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ manifest
def test_older_manifest_that_disagrees_with_the_corpus_is_refused(tmp_path):
    """The folder an earlier `--stages groups` rerun left: a new manifest (no corpus), the old
    corpus.jsonl."""
    knowledge = folder(tmp_path)
    manifest = {"n_classes": 4, "stages": ["groups"], "corpus": {}}
    (knowledge / "manifest.json").write_text(json.dumps(manifest))
    assert error_of(lambda: KnowledgeFolder(knowledge)) == (
        f"{knowledge / 'corpus.jsonl'} has 2 lines but {knowledge / 'manifest.json'} records 0; the "
        f"folder was changed after `python -m llm_knowledge` wrote it: make it again with --out "
        f"{knowledge}")
    manifest["corpus"] = {"relation": 1, "coarse": 1}
    (knowledge / "manifest.json").write_text(json.dumps(manifest))
    assert len(KnowledgeFolder(knowledge).corpus().texts) == 2


def test_a_byte_order_mark_is_skipped_in_corpus_and_json_files(tmp_path):
    """Files edited by hand (Notepad saves UTF-8 with a BOM) read as without it."""
    knowledge = folder(tmp_path)
    (knowledge / "groups.json").write_bytes(("\ufeff" + json.dumps(GROUPS)).encode())
    (knowledge / "corpus.jsonl").write_bytes(("\ufeff" + json.dumps(line("a dog on the sofa.")) + "\r\n"
                                              + json.dumps(line("a red car.", asked=["car"], found=["car"]))
                                              + "\r\n").encode())
    knowledge_folder = KnowledgeFolder(knowledge)
    assert knowledge_folder.groups == GROUPS
    corpus = knowledge_folder.corpus()
    assert corpus.texts == ["a dog on the sofa.", "a red car."]
    assert corpus.labels.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]
