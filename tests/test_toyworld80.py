"""The harder toy world `toy80`: its tables, sampler, drawing, noisy captions and noisy oracle."""

import csv
import itertools
import json
import math
import re
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import train
from hiprompt.clip.backbone import build_clip
from hiprompt.toyworld.captions import caption_for, describe
from hiprompt.toyworld.draw import SHAPES, make_image, object_mask, render
from hiprompt.toyworld.generate import write_dataset
from hiprompt.toyworld.oracle import ToyOracleBackend
from hiprompt.toyworld.world import COLOURS, TEXTURES, SceneSample, never_together, sample_scene
from hiprompt.toyworld.worlds import get_world
from hiprompt.training.metrics import multilabel_metrics
from llm_knowledge.backends.base import BackendOptions
from llm_knowledge.cli import main as knowledge_main

WORLD = get_world("toy80")


def _within(measured: int, expected: float, trials: int, sigmas: float = 4.0) -> bool:
    """`measured` successes agree with an `expected` count of `trials` Bernoulli draws."""
    p = expected / trials
    return abs(measured - expected) <= sigmas * math.sqrt(trials * p * (1 - p)) + 1


# ----------------------------------------------------------------- tables
def test_tables_have_eighty_distinct_classes_in_overlapping_scenes():
    names = WORLD.class_names
    assert len(names) == 80 and len(set(names)) == 80
    assert all(re.fullmatch(r"[a-z]+", name) for name in names)
    assert set(WORLD.shapes) == set(names) and set(WORLD.shapes.values()) <= set(SHAPES)
    assert len(set(WORLD.shapes.values())) == 80, "two classes share a shape"
    shared = [c.name for c in WORLD.classes if len(c.scenes) >= 2]
    assert len(shared) >= 30, "pools should overlap: many classes in several scenes"
    for scene, pool in WORLD.scene_classes.items():
        assert len(pool) >= max(WORLD.object_counts), (scene, pool)
    assert set(itertools.chain(*WORLD.scene_classes.values())) == set(names)
    for name, words in WORLD.synonyms.items():
        assert name in names and not set(words) & set(names), (name, words)


def test_the_dense_grid_of_its_clip_is_four_by_four():
    backbone = build_clip("toy80", "random")
    images = torch.zeros(2, 3, WORLD.image_size, WORLD.image_size)
    pooled, dense = backbone.encode_image_features(images)
    assert pooled.shape == (2, 64) and dense.shape == (2, 16, 64)


# ----------------------------------------------------------------- sampler and drawing
def test_generator_is_seeded_per_image():
    first, sample = make_image(7, 3, WORLD)
    again, same = make_image(7, 3, WORLD)
    assert sample == same and first.tobytes() == again.tobytes()
    assert first.size == (128, 128)
    assert first.tobytes() not in (make_image(8, 3, WORLD)[0].tobytes(), make_image(7, 4, WORLD)[0].tobytes())
    assert caption_for(sample, 7, 3, WORLD) == caption_for(same, 7, 3, WORLD)


def test_labels_are_exactly_what_is_drawn():
    sizes = Counter()
    for index in range(40):
        image, sample = make_image(11, index, WORLD)
        assert 1 <= len(sample.objects) <= 6
        assert sample.labels == tuple(n for n in WORLD.class_names if n in {o.name for o in sample.objects})
        pixels = np.asarray(image).astype(int)
        backdrop = np.asarray(render(SceneSample(sample.scene, (), sample.clutter, sample.background), WORLD))
        changed = np.abs(pixels - backdrop).sum(-1) > 0  # [H, W] pixels the objects painted
        inside = np.zeros_like(changed)
        for k, obj in enumerate(sample.objects):
            x0, y0, x1, y1 = obj.box
            inside[max(0, y0 - 3):y1 + 4, max(0, x0 - 3):x1 + 4] = True  # wide strokes reach 3 px beyond
            sizes[obj.size] += 1
            # every object stays visible: its mask less what later objects paint over it
            own = np.asarray(object_mask(obj, WORLD)) > 0
            later = np.zeros_like(own)
            for other in sample.objects[k + 1:]:
                later |= np.asarray(object_mask(other, WORLD)) > 0
            assert (own & ~later).sum() >= 0.5 * own.sum() > 0, f"{obj.name} hidden in image {index}"
            # later boxes cover at most max_overlap of its box (union counted on a pixel grid)
            covered = np.zeros((128, 128), bool)
            for other in sample.objects[k + 1:]:
                covered[other.box[1]:other.box[3], other.box[0]:other.box[2]] = True
            area = (x1 - x0) * (y1 - y0)
            assert covered[y0:y1, x0:x1].sum() <= WORLD.max_overlap * area
        assert not (changed & ~inside).any(), "object pixels outside every object's box"
    assert set(sizes) == {"small", "medium", "large"}


def test_clutter_and_overlap_occur():
    samples = [sample_scene(0, i, WORLD) for i in range(300)]
    with_clutter = sum(bool(s.clutter) for s in samples) / len(samples)
    assert 0.7 < with_clutter < 0.9  # P(no clutter) = 0.2
    overlapping = sum(
        any(min(a.box[2], b.box[2]) > max(a.box[0], b.box[0]) and min(a.box[3], b.box[3]) > max(a.box[1], b.box[1])
            for a, b in itertools.combinations(s.objects, 2))
        for s in samples
    )
    assert overlapping >= 20
    assert len({s.background for s in samples}) > 100  # jittered scene colours


def test_co_occurrence_is_informative_but_not_deterministic():
    samples = [sample_scene(0, i, WORLD) for i in range(1000)]
    together = {pair for s in samples for pair in itertools.combinations(sorted(s.labels), 2)}
    assert not together & never_together(WORLD)
    for s in samples:
        assert set(s.labels) <= set(WORLD.scene_classes[s.scene])
    # a class of several scenes meets classes of each of them
    tree_mates = {n for s in samples if "tree" in s.labels for n in s.labels}
    for scene in WORLD.class_info["tree"].scenes:
        assert tree_mates & (set(WORLD.scene_classes[scene]) - {"tree"}), scene
    for name, (companion, probability) in WORLD.companions.items():
        with_name = [s for s in samples if name in s.labels]
        share = sum(companion in s.labels for s in with_name) / len(with_name)
        base = sum(companion in s.labels for s in samples) / len(samples)
        assert base < share < 1.0, (name, companion, share, base)


# ----------------------------------------------------------------- noisy captions
def test_caption_noise_matches_the_set_rates():
    style = WORLD.caption_style
    omitted = expected_omitted = objects = 0
    synonym_trials = synonyms = stated = wrong = flagged = 0
    for index in range(1500):
        sample = sample_scene(3, index, WORLD)
        result = describe(sample, np.random.default_rng([3, index, 1]), WORLD)
        n, p = len(sample.objects), style.omit_probability
        objects += n
        omitted += n - len(result.mentions)
        expected_omitted += n * p - p ** n  # each left out with p, but one is kept when all would be
        truth = {obj.name: obj for obj in sample.objects}
        for mention in result.mentions:
            assert mention.phrase in result.text
            words = mention.phrase.split()
            name_at = words.index(mention.word)
            assert words[0] in ("a", "an") and words[1:name_at] == [v for _, v in mention.stated]
            if WORLD.synonyms.get(mention.name):
                synonym_trials += 1
                synonyms += mention.word != mention.name
            obj = truth[mention.name]
            for field, value in mention.stated:  # wrongness recounted from the object itself
                stated += 1
                wrong += value != getattr(obj, field)
                vocabulary = {"size": WORLD.sizes, "colour": COLOURS, "texture": TEXTURES}[field]
                assert value in vocabulary
            flagged += len(mention.wrong)
    assert wrong == flagged
    assert _within(omitted, expected_omitted, objects)
    assert _within(synonyms, style.synonym_probability * synonym_trials, synonym_trials)
    assert _within(wrong, style.wrong_attribute_probability * stated, stated)
    assert 0.2 < omitted / objects < 0.3 and synonym_trials > 800 and stated > 2500


def test_captions_name_present_classes_or_their_synonyms():
    words_of = {name: {name, *WORLD.synonyms.get(name, ())} for name in WORLD.class_names}
    for index in range(200):
        sample = sample_scene(4, index, WORLD)
        text = caption_for(sample, 4, index, WORLD)
        tokens = set(re.findall(r"[a-z]+", text))
        named = {name for name, words in words_of.items() if tokens & words}
        assert named and named <= set(sample.labels), (text, sample.labels)


# ----------------------------------------------------------------- noisy oracle
def _question(kind, classes, attribute=None, count=None):
    return SimpleNamespace(kind=kind, prompt="", classes=list(classes), attribute=attribute, count=count,
                           attributes=None)


def _subject(sentence: str) -> str:
    """The first class named in a sentence."""
    return next(w for w in re.findall(r"[a-z]+", sentence) if w in WORLD.class_info)


def test_oracle_mistakes_come_at_the_set_rates():
    clean = ToyOracleBackend(BackendOptions(model="toy80"))
    noisy = ToyOracleBackend(BackendOptions(model="toy80:wrong_class=0.3,wrong_attribute=0.2,missing_member=0.25"))
    assert noisy.identity()["noise"] == {"wrong_attribute": 0.2, "wrong_class": 0.3, "missing_member": 0.25}
    assert clean.identity()["world"] != ToyOracleBackend(BackendOptions()).identity()["world"]
    assert "noise" not in clean.identity()

    about = [(name, line) for name in WORLD.class_names
             for line in noisy.answer(_question("describe", [name], "shape", count=8)).splitlines()]
    assert len(about) > 500
    other = sum(_subject(line) != name for name, line in about)  # sentences about another class
    assert _within(other, 0.3 * len(about), len(about))
    for name in WORLD.class_names:
        assert all(_subject(line) == name for line in clean.answer(_question("describe", [name], "shape", count=8)).splitlines())

    # wrong attributes: a colour the sentence's own class does not have
    colour_only = ToyOracleBackend(BackendOptions(model="toy80:wrong_attribute=0.4"))
    trials = foreign = 0
    for name in WORLD.class_names:
        colour = WORLD.class_info[name].colours[0]
        for line in colour_only.answer(_question("describe", [name], colour, count=6)).splitlines():
            trials += 1
            first = re.findall(r"[a-z]+", line)[1]  # "a <colour> <name> ..."
            assert first in COLOURS
            foreign += first not in WORLD.class_info[name].colours
    assert _within(foreign, 0.4 * trials, trials)

    members = missing = 0
    for seed in range(10):
        oracle = ToyOracleBackend(BackendOptions(seed=seed, model="toy80:missing_member=0.25"))
        answer = oracle.answer(_question("coarse_groups", WORLD.class_names))
        grouped = [n for line in answer.splitlines() for n in line.split(". ", 1)[1].split(", ")]
        assert len(grouped) == len(set(grouped)) and set(grouped) <= set(WORLD.class_names)
        members += len(WORLD.class_names)
        missing += len(WORLD.class_names) - len(grouped)
    assert _within(missing, 0.25 * members, members)


def test_a_wrong_texture_of_a_class_with_every_texture_is_another_shape_word():
    oracle = ToyOracleBackend(BackendOptions(model="toy80:wrong_attribute=1"))
    assert set(WORLD.class_info["block"].textures) == set(TEXTURES)
    lines = oracle.answer(_question("describe", ["block"], "striped", count=5)).splitlines()
    others = {w for c in WORLD.classes for w in c.shape_words} - set(WORLD.class_info["block"].shape_words)
    for line in lines:
        assert not set(re.findall(r"[a-z]+", line)) & set(TEXTURES), line
        assert set(re.findall(r"[a-z-]+", line)) & others, line


def test_oracle_model_option_is_checked():
    with pytest.raises(ValueError, match="unknown toy world 'toy81'"):
        ToyOracleBackend(BackendOptions(model="toy81"))
    with pytest.raises(ValueError, match="'wrong=0.1' is not RATE=VALUE"):
        ToyOracleBackend(BackendOptions(model="toy80:wrong=0.1"))
    with pytest.raises(ValueError, match="wrong_class=1.5: expected a rate"):
        ToyOracleBackend(BackendOptions(model="toy80:wrong_class=1.5"))
    with pytest.raises(ValueError, match="not a toy80-world class"):
        ToyOracleBackend(BackendOptions(model="toy80")).answer(_question("describe", ["dragon"], "red"))


# ----------------------------------------------------------------- the method, CI-sized
@pytest.mark.filterwarnings("ignore:.*have no positive image")  # 40 images do not show all 80 classes
def test_the_method_runs_on_toy80_with_a_noisy_oracle(tmp_path):
    """Knowledge from the oracle with mistakes, one epoch of hierarchical prompts, held-out
    images through the 4x4 dense branch: the learned prompts rank classes far above chance."""
    data, knowledge, out = tmp_path / "data", tmp_path / "knowledge", tmp_path / "run"
    write_dataset(data, n_images=40, seed=2, world=WORLD)
    assert knowledge_main([
        "--classes", str(data / "classnames.txt"), "--backend", "toy-oracle",
        "--model", "toy80:wrong_attribute=0.1,wrong_class=0.1,missing_member=0.1", "--profile", "small",
        "--group-backbone", "toy80", "--group-weights", "packaged", "--out", str(knowledge), "--no-progress",
    ]) == 0
    train.main(["--root", str(data), "--dataset-config-file", "configs/datasets/toy80.yaml", "--seed", "1",
                "--trainer", "HierarchicalCoOp", "--config-file", "configs/trainers/HierarchicalCoOp/toy80.yaml",
                "--output-dir", str(out), "DATASET.TEXT.DIR", str(knowledge), "OPTIM.MAX_EPOCH", "1",
                "DATALOADER.TRAIN_X.BATCH_SIZE", "64"])
    result = json.loads((out / "results_test.json").read_text())
    with open(data / "labels.csv") as table:
        rows = list(csv.DictReader(table))
    labels = np.array([[name in row["labels"].split("|") for name in WORLD.class_names] for row in rows], dtype=int)
    chance = np.mean([multilabel_metrics(np.random.default_rng(s).random(labels.shape), labels)["mAP"]
                      for s in range(5)])
    assert result["num_images"] == 40 and result["num_classes_evaluated"] == int((labels.sum(0) > 0).sum())
    assert result["metrics"]["mAP"] > chance + 15, (result["metrics"]["mAP"], chance)
