"""Image captions -> a knowledge folder: COCO's captions format, JSON lines, plain lines."""

import json

import numpy as np
import pytest

from hiprompt.data.knowledge import KnowledgeFolder
from llm_knowledge.captions import main, read_captions, write_caption_folder

CLASSES = ["dog", "cat", "car", "bus"]


def coco_captions_file(path, captions):
    path.write_text(json.dumps({
        "info": {}, "licenses": [], "images": [{"id": 1, "file_name": "1.jpg"}],
        "annotations": [{"image_id": 1, "id": i, "caption": c} for i, c in enumerate(captions)],
    }))
    return path


def test_coco_captions_become_a_folder_training_reads(tmp_path):
    source = coco_captions_file(tmp_path / "captions_train2017.json", [
        "A dog sitting next to a cat.", "A red car parked by the road.", "A view of the mountains.",
        "Two buses and a car on a street."])
    assert main(["--classes", str(write_classes(tmp_path)), "--captions", str(source),
                 "--out", str(tmp_path / "knowledge")]) == 0
    folder = KnowledgeFolder(tmp_path / "knowledge")  # checks every file against the manifest
    corpus = folder.corpus()
    assert corpus.texts == ["A dog sitting next to a cat.", "A red car parked by the road.",
                            "Two buses and a car on a street."]
    assert corpus.kinds == ["caption"] * 3
    np.testing.assert_array_equal(corpus.labels, [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]])
    manifest = json.loads((tmp_path / "knowledge" / "manifest.json").read_text())
    assert manifest["captions"] == {"read": 4, "labelled": 3, "naming_no_class": 1, "labeller": "project"}
    assert folder.groups == {"coarse": [], "fine": []}


def write_classes(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


def test_json_lines_and_plain_lines_are_read_in_order(tmp_path):
    lines = tmp_path / "captions.jsonl"
    lines.write_text('{"image": "a.png", "caption": "a dog."}\n\n{"caption": "a cat."}\n')
    assert read_captions(lines) == ["a dog.", "a cat."]
    plain = tmp_path / "captions.txt"
    plain.write_text("a bus.\n\n  a car on a road. \n")
    assert read_captions(plain) == ["a bus.", "a car on a road."]


@pytest.mark.parametrize("content, message", [
    ('{"images": []}', r"captions_train2017.json: expected the COCO captions format"),
    ('{"annotations": [{"caption": "a dog."}, {"id": 3}]}', r"annotation 2 is \{\"id\": 3\}"),
    ("{not json", r"captions_train2017.json: not valid JSON"),
])
def test_malformed_coco_captions_are_named(tmp_path, content, message):
    path = tmp_path / "captions_train2017.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_captions(path)


def test_bad_json_line_is_named_and_captions_naming_no_class_are_refused(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"caption": "a dog."}\n{"text": "a cat."}\n')
    with pytest.raises(ValueError, match=r"c.jsonl, line 2: expected an object with a 'caption' string"):
        read_captions(path)
    with pytest.raises(ValueError, match="none of the 1 captions names one of the 4 classes"):
        write_caption_folder(["a view of the sea."], CLASSES, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_byte_order_mark_is_not_part_of_the_first_caption(tmp_path):
    """Caption files written by hand (Notepad, Excel's "Unicode text") may start with a BOM."""
    plain = tmp_path / "captions.txt"
    plain.write_bytes("\ufeffa bus.\r\na car on a road.\r\n".encode())
    assert read_captions(plain) == ["a bus.", "a car on a road."]
    lines = tmp_path / "captions.jsonl"
    lines.write_bytes('\ufeff{"caption": "a dog."}\n{"caption": "a cat."}\n'.encode())
    assert read_captions(lines) == ["a dog.", "a cat."]
    coco = coco_captions_file(tmp_path / "captions_val2017.json", ["a dog.", "a red car."])
    coco.write_bytes(b"\xef\xbb\xbf" + coco.read_bytes())
    assert read_captions(coco) == ["a dog.", "a red car."]


# -- TaI-DPT's training text (guozix/TaI-DPT 1333eca, datasets/coco2014_distill.py, nuswide_distill.py) --
def test_templates_are_taidpts_89_sentences_per_class_with_its_names():
    from llm_knowledge.captions import IMAGENET_TEMPLATES, template_records

    records = template_records(["motorcycle", "dog"])
    assert len(IMAGENET_TEMPLATES) == len(set(IMAGENET_TEMPLATES)) == 80
    assert len(records) == 2 * 89
    bike = [r["text"] for r in records[:89]]
    assert bike[:9] == ["a photo of a motor bike."] * 9  # default_prompt_num - 1 copies of prompt_template
    assert bike.count("a photo of a motor bike.") == 10  # ... and once more among the ImageNet templates
    assert bike[9] == "a bad photo of a motor bike." and bike[-1] == "a tattoo of the motor bike."
    assert records[89]["text"] == "a photo of a dog."
    assert {tuple(r["found"]) for r in records[:89]} == {("motorcycle",)}  # label[i] = 1: one class
    assert {tuple(r["asked"]) for r in records[89:]} == {("dog",)}


def authors_cap(labels, cap):
    """nuswide_distill.py written out: count_list = argsort(class counts); each caption to the first
    class of count_list it has; per class the first `cap` in order (ties of counts: class order)."""
    labels = np.asarray(labels)
    count_list = np.argsort(labels.sum(axis=0), kind="stable")
    label_idx2capid = {c: [] for c in range(labels.shape[1])}
    for i, cur_label in enumerate(labels):
        for lidx in count_list:
            if cur_label[lidx] > 0.5:
                label_idx2capid[lidx].append(i)
                break
    return sorted(i for c in label_idx2capid for i in label_idx2capid[c][:min(cap, len(label_idx2capid[c]))])


def test_each_caption_goes_to_its_rarest_class_capped():
    from llm_knowledge.captions import cap_per_rarest_class

    found = [["dog", "cat"], ["dog"], ["dog", "car"], ["cat"], ["dog", "cat"], ["car", "bus"], ["dog"]]
    records = [{"text": str(i), "found": f} for i, f in enumerate(found)]
    # counts: dog 5, cat 3, car 2, bus 1 -> rarest first: bus, car, cat, dog
    # owners: cat, dog, car, cat, cat, bus, dog; a cap of 2 drops the third cat (4) and nothing else
    kept = cap_per_rarest_class(records, CLASSES, 2)
    assert [r["text"] for r in kept] == ["0", "1", "2", "3", "5", "6"]
    labels = [[int(c in f) for c in CLASSES] for f in found]
    for cap in (1, 2, 3, 1000):
        assert [int(r["text"]) for r in cap_per_rarest_class(records, CLASSES, cap)] == authors_cap(labels, cap)


def test_sampling_is_seeded_and_keeps_file_order():
    from llm_knowledge.captions import sample_captions

    captions = [f"caption {i}" for i in range(50)]
    picked = sample_captions(captions, 7, seed=3)
    assert len(picked) == 7 == len(set(picked)) and picked == sorted(picked, key=captions.index)
    assert picked == sample_captions(captions, 7, seed=3) != sample_captions(captions, 7, seed=4)
    assert sample_captions(captions, 0) == sample_captions(captions, 118287) == captions


def test_recipe_taidpt_on_coco_adds_7120_template_sentences_and_ids_select_captions(tmp_path):
    source = coco_captions_file(tmp_path / "captions_train2017.json", [
        "A dog sitting next to a cat.", "A red car parked by the road.", "A view of the mountains.",
        "Two buses and a car on a street."])
    ids = tmp_path / "ids.json"
    ids.write_text("[3, 0, 2]")
    out = tmp_path / "knowledge"
    assert main(["--classes", "coco", "--captions", str(source), "--caption-ids", str(ids), "--recipe", "taidpt",
                 "--out", str(out)]) == 0
    corpus = KnowledgeFolder(out).corpus()
    assert corpus.texts[:2] == ["Two buses and a car on a street.", "A dog sitting next to a cat."]
    assert len(corpus.texts) == 2 + 80 * 89  # TaI-DPT's 7,120 more on COCO
    assert "a photo of a aeroplane." in corpus.texts
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["captions"] == {"read": 3, "labelled": 2, "naming_no_class": 1, "labeller": "project"}
    assert manifest["taidpt"]["templates"] == 7120 and manifest["taidpt"]["sampled"]["count"] == 3
    assert main(["--classes", str(write_classes(tmp_path)), "--captions", str(source), "--recipe", "taidpt",
                 "--out", str(tmp_path / "other")]) == 2  # TaI-DPT's values exist for its data sets only


# TaI-DPT's labelling, worked by hand from its rule (coco2014_distill.py): the caption's lemmas
# joined and padded; names of more than one word first, then one-word names and the multi-word
# ones without spaces; each name found labels its class and its occurrences become a space.
LEMMAS = {"dogs": "dog", "sits": "sit", "plates": "plate", "hotdogs": "hotdog", "hot": "hot", "bears": "bear"}


def toy_lemmas(text):
    """A stand-in for NLTK's lemmas: lower-case words, a few plurals and verbs reduced by hand."""
    return [LEMMAS.get(word, word) for word in text.lower().replace(".", " ").split()]


@pytest.mark.parametrize("caption, found", [  # found: in class order
    ("Two hot dogs on plates.", ["hot dog", "plate"]),  # "hot dog" found first: its "dog" is read once
    ("A dog sits by a hot stove.", ["dog"]),  # "hot" alone names nothing
    ("Hotdogs and a dog.", ["dog", "hot dog"]),  # the name without its space, and another mention
    ("A teddy bear and two bears.", ["bear", "teddy bear"]),  # the longer name, then the other mention
    ("A doghouse.", []),  # whole words only: " dog " is not in " doghouse "
])
def test_taidpt_labeller_matches_names_on_lemmas_longest_first(caption, found):
    from llm_knowledge.taidpt_labelling import WordMatchLabeller

    classes = ["dog", "hot dog", "plate", "bear", "teddy bear"]
    labeller = WordMatchLabeller(classes, {"plate": ["dish"]}, lemmas=toy_lemmas)
    assert labeller.find(caption) == found


def test_taidpt_labeller_is_a_switch_of_the_caption_folder_and_says_what_nltk_lacks(tmp_path, monkeypatch):
    import llm_knowledge.taidpt_labelling as taidpt

    captions = ["Two hot dogs on plates.", "A doghouse."]
    manifest = write_caption_folder(captions, ["dog", "hot dog", "plate"], tmp_path / "k", labeller="project")
    assert manifest["captions"]["labeller"] == "project"
    monkeypatch.setattr(taidpt.WordMatchLabeller.__init__, "__defaults__", (toy_lemmas,))
    manifest = write_caption_folder(captions, ["dog", "hot dog", "plate"], tmp_path / "t", labeller="taidpt")
    assert manifest["captions"] == {"read": 2, "labelled": 1, "naming_no_class": 1, "labeller": "taidpt"}
    corpus = [json.loads(line) for line in (tmp_path / "t" / "corpus.jsonl").read_text().splitlines()]
    assert [r["found"] for r in corpus] == [["hot dog", "plate"]]
    try:
        import nltk  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"^--labeller taidpt needs NLTK: pip install nltk$"):
            taidpt.nltk_lemmas("a dog")
