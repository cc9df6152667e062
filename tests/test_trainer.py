"""Trainers end to end on the built-in runtime: zero-shot on real images, text training,
frozen CLIP, checkpoints, resume, and the feature cache."""

import json
import random

import numpy as np
import pytest
import torch
from conftest import coco_mini_root, voc_mini_root, write_knowledge_folder
from PIL import Image

import train
from hiprompt.clip import ClipBackbone
from hiprompt.model.scoring import fuse
from hiprompt.training.checkpoint import CheckpointHost
from hiprompt.training.runtime import TrainerRuntime, build_trainer, set_random_seed

ZS_TINY = ["--trainer", "ZeroshotCLIP", "--config-file", "configs/trainers/ZeroshotCLIP/tiny.yaml"]
HC_TINY = ["--trainer", "HierarchicalCoOp", "--config-file", "configs/trainers/HierarchicalCoOp/tiny.yaml"]


def results(folder):
    return json.loads((folder / "results_test.json").read_text())


def test_zeroshot_coco_mini_then_cache_is_reused(tmp_path, monkeypatch):
    root = coco_mini_root()
    args = ["--root", str(root), "--dataset-config-file", "configs/datasets/coco2017.yaml",
            *ZS_TINY, "--eval-only"]
    train.main(args + ["--output-dir", str(tmp_path / "first")])
    first = results(tmp_path / "first")
    assert first["num_images"] == 128 and first["num_classes_evaluated"] == 73

    calls = []
    original = ClipBackbone.encode_image_features
    monkeypatch.setattr(ClipBackbone, "encode_image_features",
                        lambda self, images: calls.append(1) or original(self, images))
    train.main(args + ["--output-dir", str(tmp_path / "second")])
    assert calls == []  # the second evaluation read the feature cache
    second = results(tmp_path / "second")
    first_config, second_config = first.pop("config"), second.pop("config")
    assert second == first
    assert second_config == {**first_config, "OUTPUT_DIR": str(tmp_path / "second")}  # only the folder differs


def test_zeroshot_voc_mini_needs_the_option_for_missing_images(tmp_path):
    root = voc_mini_root()
    args = ["--root", str(root), "--dataset-config-file", "configs/datasets/voc2007.yaml",
            *ZS_TINY, "--eval-only", "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 2
    train.main(args + ["DATASET.ALLOW_MISSING_IMAGES", "True"])
    assert (tmp_path / "results_test.json").is_file()


# ------------------------------------------------------------------ text training
CLASSES = ["dog", "cat", "car", "bus", "cup", "knife", "tree", "boat"]
SCENES = [["dog", "cat", "tree"], ["car", "bus"], ["cup", "knife"], ["boat", "tree"]]


def small_corpus(seed=0):
    rng = random.Random(seed)
    openers = ["there is a {} here.", "a photo with a {} in it.", "look, a {} again.",
               "my friend has a {} at home.", "someone painted a {} on the wall."]
    sentences = []
    for scene in SCENES:
        for _ in range(30):
            picked = rng.sample(scene, rng.randint(1, len(scene)))
            text = " and ".join(f"a {c}" for c in picked) + rng.choice([" in the street.", " together.", "."])
            sentences.append((text, picked, "relation"))
    for name in CLASSES:
        for opener in openers:
            sentences.append((opener.format(name), [name], "coarse"))
    return sentences


def make_text_world(folder, n_images: int = 6):
    """A knowledge folder over CLASSES and a custom image set of `n_images` random-pixel images
    with two labels each in `folder`."""
    knowledge = write_knowledge_folder(folder / "knowledge", CLASSES,  # a class is in one group
                                       {"coarse": SCENES[:3], "fine": [["car", "bus"]]}, small_corpus())
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = ["image,labels"]
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
        rows.append(f"{i}.png,{CLASSES[i % 8]}|{CLASSES[(i + 3) % 8]}")
    (images / "labels.csv").write_text("\n".join(rows) + "\n")
    return knowledge, images


@pytest.fixture
def text_world(tmp_path):
    return make_text_world(tmp_path)


def make_cfg(trainer, text_world, out, *opts):
    knowledge, images = text_world
    args = train.parse_args([
        "--root", str(images), "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", "configs/datasets/custom.yaml",
        "--config-file", f"configs/trainers/{trainer}/tiny.yaml", "--output-dir", str(out),
        "DATASET.CSV", "labels.csv", "DATASET.TEXT.DIR", str(knowledge), "DATASET.TEXT.HOLDOUT", "0.3",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "16", *opts,
    ])
    set_random_seed(1)  # as train.py does before building the trainer
    return train.setup_cfg(args)


@torch.no_grad()
def held_out_text_map(trainer) -> float:
    """mAP (sklearn's average precision, classes with a positive) of the fused text scores on
    the corpus's held-out sentences."""
    from sklearn.metrics import average_precision_score

    index = trainer.holdout_index
    eot, tokens, mask = trainer.description_features().batch(index)
    score_g, score_l = trainer.model.text_scores(eot, tokens, mask, trainer.class_embeddings())
    scores = fuse(score_g, score_l, trainer.model.hp.LAMBDA_FUSE).numpy()  # [N, C]
    labels = trainer.text_set.corpus.labels[index.numpy()]  # [N, C]
    present = labels.sum(axis=0) > 0
    return 100 * float(np.mean([average_precision_score(labels[:, c], scores[:, c]) for c in np.flatnonzero(present)]))


def test_text_training_lowers_loss_and_beats_handcrafted_on_heldout_text(text_world, tmp_path):
    handcrafted = build_trainer(make_cfg("ZeroshotCLIP", text_world, tmp_path / "zs"))
    hand_map = held_out_text_map(handcrafted)

    cfg = make_cfg("HierarchicalCoOp", text_world, tmp_path / "hc", "OPTIM.MAX_EPOCH", "6",
                   "OPTIM.STEPSIZE", "(4, 5)", "TEST.NO_TEST", "True")
    trainer = build_trainer(cfg)
    losses = []
    original = trainer.forward_backward
    trainer.forward_backward = lambda batch: (lambda parts: losses.append(parts["loss"]) or parts)(original(batch))
    clip_before = {k: v.clone() for k, v in trainer.clip.state_dict().items()}
    trainer.train()

    # the mixins' written contracts hold for the trainer the plug-in built
    assert isinstance(trainer, TrainerRuntime) and isinstance(trainer, CheckpointHost)
    assert not isinstance(handcrafted, TrainerRuntime)  # never trained: no epoch or batch ran
    per_epoch = np.array_split(np.array(losses), 6)
    assert per_epoch[-1].mean() < per_epoch[0].mean()
    learned_map = held_out_text_map(trainer)
    assert learned_map > hand_map, (learned_map, hand_map)
    # the CLIP weights are bit-identical after training; only prompt tokens were learned
    assert all(torch.equal(clip_before[k], v) for k, v in trainer.clip.state_dict().items())
    assert all(p.grad is None for p in trainer.clip.parameters())
    assert all(p.grad is not None for p in trainer.model.prompts.parameters())
    print(f"held-out text mAP: hand-crafted {hand_map:.2f}, learned {learned_map:.2f}")


def test_checkpoint_holds_only_prompts_and_eval_only_reloads_it(text_world, tmp_path):
    out = tmp_path / "run"
    cfg = make_cfg("HierarchicalCoOp", text_world, out, "OPTIM.MAX_EPOCH", "1")
    trainer = build_trainer(cfg)
    trainer.train()
    trained = results(out)
    state = torch.load(out / "prompt_learner" / "model.pth.tar-1", weights_only=True)["state_dict"]
    assert all(key.startswith(("global_context.", "local_context.")) for key in state)
    assert sum(v.numel() for k, v in state.items() if "vectors" in k) == sum(
        p.numel() for p in trainer.model.prompts.parameters())

    knowledge, images = text_world
    train.main(["--root", str(images), "--seed", "1", *HC_TINY, "--dataset-config-file",
                "configs/datasets/custom.yaml", "--output-dir", str(tmp_path / "eval"),
                "--eval-only", "--model-dir", str(out), "DATASET.CSV", "labels.csv",
                "DATASET.TEXT.DIR", str(knowledge), "DATASET.TEXT.HOLDOUT", "0.3"])
    assert results(tmp_path / "eval")["metrics"]["mAP"] == pytest.approx(trained["metrics"]["mAP"])


def test_interrupted_run_resumes_where_it_stopped(text_world, tmp_path):
    common = ("OPTIM.STEPSIZE", "(1, 2)", "TEST.NO_TEST", "True")
    straight = build_trainer(make_cfg("HierarchicalCoOp", text_world, tmp_path / "straight",
                                      "OPTIM.MAX_EPOCH", "3", *common))
    straight.train()
    first = build_trainer(make_cfg("HierarchicalCoOp", text_world, tmp_path / "resumed",
                                   "OPTIM.MAX_EPOCH", "2", *common))
    first.train()  # "interrupted" after two epochs
    second = build_trainer(make_cfg("HierarchicalCoOp", text_world, tmp_path / "resumed",
                                    "OPTIM.MAX_EPOCH", "3", *common))
    epochs_run = []
    original = second.run_epoch
    second.run_epoch = lambda: epochs_run.append(second.epoch) or original()
    second.train()
    assert epochs_run == [2]
    for (name, a), (_, b) in zip(straight.model.prompts.state_dict().items(),
                                 second.model.prompts.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_eval_only_with_other_prompt_structure_says_what_to_match(text_world, tmp_path):
    out = tmp_path / "run"
    build_trainer(make_cfg("HierarchicalCoOp", text_world, out, "OPTIM.MAX_EPOCH", "1", "TEST.NO_TEST", "True")).train()
    other = build_trainer(make_cfg("HierarchicalCoOp", text_world, tmp_path / "eval",
                                   "TRAINER.HIPROMPT.N_CTX_CLASS", "2"))
    with pytest.raises(ValueError, match="N_CTX_"):
        other.load_model(str(out))


def test_unused_corpus_lines_are_counted_printed_and_recorded(text_world, tmp_path, capsys):
    knowledge, _ = text_world
    with open(knowledge / "corpus.jsonl", "a") as handle:
        for record in ({"text": "", "asked": ["dog"], "found": ["dog"], "kind": "coarse"},
                       {"text": "a dog in a scene.", "asked": ["dog"], "found": ["dog"], "kind": "scene"},
                       {"text": "nothing named here.", "asked": [], "found": [], "kind": "relation"}):
            handle.write(json.dumps(record) + "\n")
    out = tmp_path / "run"
    build_trainer(make_cfg("HierarchicalCoOp", text_world, out, "OPTIM.MAX_EPOCH", "1",
                           "TEST.NO_TEST", "True")).train()
    sentences = json.loads((out / "run_info.json").read_text())["sentences"]
    assert sentences["total"] == len(small_corpus())
    assert sentences["dropped"] == {"kind_not_selected": 0, "unknown_kind": 1, "empty_text": 1, "no_label": 1}
    assert (f"text corpus {knowledge}: {len(small_corpus())} sentences ({sentences['train']} train, "
            f"{sentences['holdout']} held out); lines not used: kind_not_selected 0, unknown_kind 1, "
            "empty_text 1, no_label 1") in capsys.readouterr().out


def test_one_class_test_set_is_refused_before_training(text_world, tmp_path, capsys):
    knowledge, images = text_world
    (images / "one.csv").write_text("image,labels\n0.png,dog\n1.png,dog\n")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--root", str(images), "--seed", "1", *HC_TINY, "--dataset-config-file",
                    "configs/datasets/custom.yaml", "--output-dir", str(out), "DATASET.CSV", "one.csv",
                    "DATASET.TEXT.DIR", str(knowledge)])
    assert exit_info.value.code == 2
    assert ("error: the test set CustomMultiLabel (DATASET.NAME): 1 class (dog): the ranking loss needs at "
            "least two classes") in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [".lock", "log.txt"]  # no checkpoint, run_info or results


def test_unreadable_images_are_listed_in_the_results(text_world, tmp_path):
    knowledge, images = text_world
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rows = (images / "labels.csv").read_text() + "broken.png,dog\n"
    (images / "with_broken.csv").write_text(rows)
    args = ["--root", str(images), *ZS_TINY, "--dataset-config-file", "configs/datasets/custom.yaml", "--eval-only"]
    train.main(args + ["--output-dir", str(tmp_path / "broken"), "DATASET.CSV", "with_broken.csv"])
    broken = results(tmp_path / "broken")
    assert broken["unreadable_images"] == {"count": 1, "paths": [str((images / "broken.png").resolve())]}
    assert broken["num_images"] == 6  # left out of the metrics
    train.main(args + ["--output-dir", str(tmp_path / "clean"), "DATASET.CSV", "labels.csv"])
    assert results(tmp_path / "clean")["unreadable_images"] == {"count": 0, "paths": []}
