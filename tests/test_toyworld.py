"""The toy world: generator, captions, oracle, dataset writer and the shipped toy CLIP."""

import csv
import hashlib
import itertools
import json
import math
import re
from types import SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch

from hiprompt.clip import build_clip
from hiprompt.toyworld.captions import caption_for
from hiprompt.toyworld.draw import SHAPES, make_image, render
from hiprompt.toyworld.generate import write_dataset
from hiprompt.toyworld.model import images_to_tensor, load_toy_clip, weights_path
from hiprompt.toyworld.oracle import ToyOracleBackend
from hiprompt.toyworld.pretrain import ImagePool, learning_rate, pretrain
from hiprompt.toyworld.world import (
    CLASS_INFO, CLASS_NAMES, COMPANIONS, SCENE_CLASSES, SCENE_INFO, TOY, SceneSample, never_together,
    sample_scene,
)
from hiprompt.toyworld.worlds import TOY80
from hiprompt.toyworld.zeroshot import evaluate, held_out_set, mean_average_precision, zero_shot_scores
from llm_knowledge.backends.base import BackendOptions

torch.set_num_threads(2)


# ----------------------------------------------------------------- world and drawing
def test_tables_are_consistent():
    assert len(CLASS_NAMES) == 20 and len(set(CLASS_NAMES)) == 20
    assert all(re.fullmatch(r"[a-z]+", name) for name in CLASS_NAMES)
    assert set(CLASS_NAMES) <= set(SHAPES) and TOY.shapes == {name: name for name in CLASS_NAMES}
    assert set(itertools.chain(*SCENE_CLASSES.values())) == set(CLASS_NAMES)
    assert ("cup", "fish") in never_together() and ("moon", "star") not in never_together()


def test_generator_is_deterministic_per_seed_and_index():
    first, sample = make_image(3, 17)
    again, same = make_image(3, 17)
    assert sample == same and first.tobytes() == again.tobytes()
    other = [make_image(4, 17)[0].tobytes(), make_image(3, 18)[0].tobytes()]
    assert first.tobytes() not in other
    assert caption_for(sample, 3, 17) == caption_for(same, 3, 17)


def test_labels_are_what_was_drawn():
    for index in range(60):
        image, sample = make_image(5, index)
        assert 1 <= len(sample.objects) <= 4
        assert sample.labels == tuple(n for n in CLASS_NAMES if n in {o.name for o in sample.objects})
        pixels = np.asarray(image).astype(int)
        background = np.asarray(SCENE_INFO[sample.scene].background)
        changed = np.abs(pixels - background).sum(-1) > 0  # [H, W]
        drawn = np.zeros_like(changed)
        for obj in sample.objects:
            x0, y0, x1, y1 = obj.box
            region = changed[max(0, y0 - 1):y1 + 2, max(0, x0 - 1):x1 + 2]
            assert region.sum() >= 10, f"{obj.name} not visible in image {index}"
            drawn[max(0, y0 - 1):y1 + 2, max(0, x0 - 1):x1 + 2] = True
        assert not (changed & ~drawn).any(), "pixels drawn outside every object's box"
        for a, b in itertools.combinations(sample.objects, 2):  # boxes do not overlap
            assert a.box[2] <= b.box[0] or b.box[2] <= a.box[0] or a.box[3] <= b.box[1] or b.box[3] <= a.box[1]


def test_an_empty_scene_renders_as_background():
    image = render(SceneSample("sea", ()))
    assert (np.asarray(image) == np.asarray(SCENE_INFO["sea"].background, dtype=np.uint8)).all()


def test_co_occurrence_structure():
    samples = [sample_scene(0, i) for i in range(800)]
    together = {pair for s in samples for pair in itertools.combinations(sorted(s.labels), 2)}
    assert not together & never_together()
    for s in samples:  # one scene per image, all objects from its pool
        assert set(s.labels) <= set(SCENE_CLASSES[s.scene])
    for name, (companion, _) in COMPANIONS.items():
        with_name = [s for s in samples if name in s.labels]
        share = sum(companion in s.labels for s in with_name) / len(with_name)
        assert share > 0.6, (name, companion, share)
    assert {s.scene for s in samples} == set(SCENE_INFO)


def test_captions_name_only_present_classes():
    for index in range(100):
        sample = sample_scene(2, index)
        text = caption_for(sample, 2, index)
        named = {w for w in re.findall(r"[a-z]+", text) if w in CLASS_INFO}
        assert named and named <= set(sample.labels)


# ----------------------------------------------------------------- oracle
def _question(kind, classes, attribute=None, count=None, attributes=None):
    return SimpleNamespace(kind=kind, prompt="", classes=list(classes), attribute=attribute, count=count,
                           attributes=attributes)


def _numbered(text):
    lines = text.splitlines()
    assert all(re.fullmatch(r"\d+\. \S.*", line) for line in lines), text
    assert [int(line.split(".")[0]) for line in lines] == list(range(1, len(lines) + 1))
    return [line.split(". ", 1)[1] for line in lines]


def test_oracle_lists_and_groups_have_the_expected_shapes():
    oracle = ToyOracleBackend(BackendOptions(seed=0))
    common, own, kept, coarse = oracle.answer_many([
        _question("common_attributes", CLASS_NAMES, count=12),
        _question("class_attributes", ["star"], count=30),
        _question("filter_attributes", ["cup"], attributes=["red", "green", "handled", "colour", "wet"]),
        _question("coarse_groups", CLASS_NAMES),
    ])
    assert len(_numbered(common)) == 12
    assert {"yellow", "pointed", "sky"} <= set(_numbered(own))
    assert _numbered(kept) == ["red", "handled", "colour"]
    groups = [item.split(", ") for item in _numbered(coarse)]
    assert sorted(itertools.chain(*groups)) == sorted(CLASS_NAMES)
    for group in groups:  # every coarse group is a scene's classes
        assert set.intersection(*(set(CLASS_INFO[n].scenes) for n in group))
    fine = [item.split(", ") for item in _numbered(oracle.answer(_question("fine_groups", SCENE_CLASSES["sky"])))]
    assert sorted(itertools.chain(*fine)) == sorted(SCENE_CLASSES["sky"]) and ["moon", "star"] in fine


def test_oracle_sentences_mention_what_was_asked():
    oracle = ToyOracleBackend(BackendOptions(seed=0))
    described, related = oracle.answer_many([
        _question("describe", ["star"], attribute="red", count=4),
        _question("relation", ["boat", "fish"], count=6),
    ])
    lines = described.splitlines()
    assert len(lines) == 4 and len(set(lines)) == 4
    assert all("star" in line and "red" in line for line in lines)
    lines = related.splitlines()
    assert len(lines) == 6
    assert all("boat" in line and "fish" in line for line in lines)
    for line in lines:  # any third class comes from the same scene
        assert {w for w in re.findall(r"[a-z]+", line) if w in CLASS_INFO} <= set(SCENE_CLASSES["sea"])


def test_oracle_is_deterministic_and_rejects_what_it_cannot_answer():
    questions = [_question("describe", [name], attribute="shape", count=3) for name in CLASS_NAMES]
    def oracle(seed):
        return ToyOracleBackend(BackendOptions(seed=seed))

    assert oracle(0).answer_many(questions) == oracle(0).answer_many(questions)
    assert oracle(0).answer_many(questions) != oracle(1).answer_many(questions)
    assert oracle(0).identity() == oracle(0).identity()
    with pytest.raises(ValueError, match="kind"):
        ToyOracleBackend(BackendOptions()).answer(_question("poem", ["star"]))
    with pytest.raises(ValueError, match="giraffe"):
        ToyOracleBackend(BackendOptions()).answer(_question("describe", ["giraffe"], attribute="red"))


# ----------------------------------------------------------------- dataset writer
def test_generate_writes_the_custom_csv_format(tmp_path):
    write_dataset(tmp_path, 6, seed=7)
    assert (tmp_path / "classnames.txt").read_text().split() == list(CLASS_NAMES)
    with open(tmp_path / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == [f"images/{i:05d}.png" for i in range(6)]
    for index, row in enumerate(rows):
        assert (tmp_path / row["image"]).is_file()
        assert tuple(row["labels"].split("|")) == sample_scene(7, index).labels
    assert len((tmp_path / "captions.jsonl").read_text().splitlines()) == 6
    with pytest.raises(ValueError, match="pretraining"):
        write_dataset(tmp_path / "x", 2, seed=0)


# ----------------------------------------------------------------- toy CLIP
def test_pretraining_is_deterministic_on_a_tiny_run():
    _, first, _ = pretrain(seed=0, steps=3, batch_size=8, lr=1e-3, weight_decay=0.1, log_every=0)
    _, again, _ = pretrain(seed=0, steps=3, batch_size=8, lr=1e-3, weight_decay=0.1, log_every=0)
    assert first == again and all(np.isfinite(first))


def test_image_pool_holds_the_drawn_images_and_recaptions_each_pass():
    pool = ImagePool(seed=3, size=10, world=TOY, workers=1)
    for index in (0, 9):
        image, sample = make_image(3, index)
        assert np.array_equal(pool.pixels[index], np.asarray(image.convert("RGB")))
        assert pool.samples[index] == sample
    assert np.array_equal(ImagePool(seed=3, size=10, world=TOY, workers=2).pixels, pool.pixels)
    tokenizer = open_clip.get_tokenizer("RN50")
    # batch 4 of a 10-image pool: step 2 takes positions 8, 9 of pass 0 and 0, 1 of pass 1
    first, second = pool.order(0), pool.order(1)
    assert sorted(first) == list(range(10)) and not np.array_equal(first, second)
    expected = [(int(first[8]), 0), (int(first[9]), 0), (int(second[0]), 1), (int(second[1]), 1)]
    images, tokens = pool.batch(2, 4, tokenizer)
    assert torch.equal(images, images_to_tensor([make_image(3, i)[0] for i, _ in expected]))
    captions = [caption_for(pool.samples[i], 3, i, TOY, draw=epoch) for i, epoch in expected]
    assert torch.equal(tokens, tokenizer(captions))
    assert caption_for(pool.samples[0], 3, 0, TOY, draw=0) == caption_for(pool.samples[0], 3, 0, TOY)


def test_interrupted_pretraining_resumes_as_if_uninterrupted(tmp_path, monkeypatch):
    pool = ImagePool(seed=0, size=16, world=TOY)
    settings = dict(seed=0, steps=4, batch_size=8, lr=1e-3, weight_decay=0.1, log_every=0, world=TOY, pool=pool)
    model, losses, _ = pretrain(**settings)
    checkpoint = tmp_path / "clip.ckpt"
    real_batch = ImagePool.batch

    def interrupted(self, step, *args):
        if step == 3:
            raise KeyboardInterrupt
        return real_batch(self, step, *args)

    monkeypatch.setattr(ImagePool, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrain(**settings, checkpoint=checkpoint, checkpoint_every=2)
    assert len(torch.load(checkpoint, weights_only=True)["losses"]) == 2
    monkeypatch.setattr(ImagePool, "batch", real_batch)
    resumed, resumed_losses, _ = pretrain(**settings, checkpoint=checkpoint, checkpoint_every=2)
    assert resumed_losses == losses
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))
    with pytest.raises(SystemExit, match="other settings"):
        pretrain(**{**settings, "lr": 2e-3}, checkpoint=checkpoint, checkpoint_every=2)


def test_anneal_cuts_the_schedule_short_and_goes_on_from_a_full_schedule_checkpoint(tmp_path, monkeypatch):
    peak, steps = 1e-3, 100  # warm-up: 5 steps, then cosine to zero at step 100
    full = [peak * (s + 1) / 5 if s < 5 else 0.5 * peak * (1 + math.cos(math.pi * (s - 5) / 95)) for s in range(100)]
    at_40 = full[40]
    annealed = [learning_rate(s, steps, peak, (40, 60)) for s in range(60)]
    assert annealed[:40] == pytest.approx(full[:40], rel=1e-12)
    assert annealed[40] == pytest.approx(at_40) and annealed[50] == pytest.approx(at_40 / 2)
    assert annealed[59] == pytest.approx(0.5 * at_40 * (1 + math.cos(math.pi * 19 / 20)))
    with pytest.raises(ValueError, match="FROM < END"):
        pretrain(seed=0, steps=4, batch_size=8, lr=1e-3, weight_decay=0.1, log_every=0, anneal=(3, 2))

    pool = ImagePool(seed=0, size=16, world=TOY)
    settings = dict(seed=0, steps=6, batch_size=8, lr=1e-3, weight_decay=0.1, log_every=0, world=TOY, pool=pool)
    model, losses, _ = pretrain(**settings, anneal=(2, 4))
    assert len(losses) == 4
    real_batch = ImagePool.batch

    def interrupted(self, step, *args):
        if step == 3:
            raise KeyboardInterrupt
        return real_batch(self, step, *args)

    at_step_2 = tmp_path / "at_step_2.ckpt"  # the full schedule, stopped after step 2
    monkeypatch.setattr(ImagePool, "batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrain(**settings, checkpoint=at_step_2, checkpoint_every=2)
    monkeypatch.setattr(ImagePool, "batch", real_batch)
    resumed, resumed_losses, _ = pretrain(**settings, checkpoint=at_step_2, checkpoint_every=2, anneal=(2, 4))
    assert resumed_losses == losses
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))

    at_step_4 = tmp_path / "at_step_4.ckpt"  # a full run keeps its last checkpoint, step 4
    _, full_losses, _ = pretrain(**settings, checkpoint=at_step_4, checkpoint_every=2)
    full_at_4 = torch.load(at_step_4, weights_only=True)["model"]
    assert full_losses[:4] == losses  # the rates differ from step 3's update on (step 2 runs at the same one)
    assert not all(torch.equal(full_at_4[k], v) for k, v in model.state_dict().items())
    with pytest.raises(SystemExit, match="other settings"):  # its steps 2, 3 ran at the full schedule's rates
        pretrain(**settings, checkpoint=at_step_4, checkpoint_every=2, anneal=(2, 5))


@pytest.mark.parametrize("world, image_size", [(TOY, 64), (TOY80, 128)], ids=["toy", "toy80"])
def test_shipped_weights_match_their_record(world, image_size):
    path = weights_path(world)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["weights"] == path.name and record.get("world", TOY.name) == world.name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    assert record["config_values"] == json.loads(json.dumps(world.clip_architecture))
    state = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    backbone = load_toy_clip(world=world)
    assert backbone.image_size == image_size and backbone.context_length == 77
    assert backbone.model.visual.conv1.weight.dtype == torch.float32
    assert torch.equal(backbone.model.visual.conv1.weight.half(), state["visual.conv1.weight"])


def test_shipped_toy_clip_recognises_held_out_objects_zero_shot():
    backbone = load_toy_clip()
    images, labels = held_out_set(seed=1, n_images=200)
    global_scores, dense_scores = zero_shot_scores(backbone, images)
    random_map = mean_average_precision(np.random.default_rng(0).random(labels.shape), labels)
    global_map = mean_average_precision(global_scores.numpy(), labels)
    dense_map = mean_average_precision(dense_scores.numpy(), labels)
    assert random_map < 30
    assert global_map > random_map + 30, (global_map, random_map)
    assert dense_map > random_map + 20, (dense_map, random_map)


def test_zero_shot_check_scores_a_candidates_weights(tmp_path):
    # an untrained CLIP of the same config, saved as a state dict: near random, while the
    # shipped weights (also given by path) score as the default
    untrained = tmp_path / "untrained.pt"
    torch.save(build_clip("toy", "random", seed=0).model.state_dict(), untrained)
    shipped = evaluate(n_images=100, seed=1)
    assert evaluate(n_images=100, seed=1, weights=weights_path(TOY)) == shipped
    candidate = evaluate(n_images=100, seed=1, weights=untrained)
    assert candidate["random"] == shipped["random"]
    assert candidate["fused"] < shipped["random"] + 15 < shipped["fused"]


def test_images_to_tensor_shape_and_normalisation():
    image, _ = make_image(0, 0)
    tensor = images_to_tensor([image, image])
    assert tensor.shape == (2, 3, 64, 64) and tensor.dtype == torch.float32
    assert -2.5 < tensor.min() and tensor.max() < 2.5
