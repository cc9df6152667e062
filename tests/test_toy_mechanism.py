"""The claim itself, guarded in CI: prompts learned on the toy world's text (its oracle's
knowledge, through the real llm_knowledge stage) score a higher mAP on the world's held-out
images than the hand-crafted prompts. Fixed seeds; real trainer, real image pipeline."""

import json

import train
from hiprompt.toyworld.generate import write_dataset
from llm_knowledge.cli import main as knowledge_main

TOY = ["--dataset-config-file", "configs/datasets/toy.yaml"]


def mean_ap(folder):
    return json.loads((folder / "results_test.json").read_text())["metrics"]["mAP"]


def test_learned_prompts_beat_handcrafted_on_toy_images(tmp_path):
    data, knowledge = tmp_path / "data", tmp_path / "knowledge"
    write_dataset(data, n_images=200, seed=1)
    assert knowledge_main(["--classes", str(data / "classnames.txt"), "--backend", "toy-oracle",
                           "--profile", "small", "--group-backbone", "toy", "--group-weights", "packaged",
                           "--out", str(knowledge), "--no-progress"]) == 0

    train.main(["--root", str(data), *TOY, "--trainer", "ZeroshotCLIP",
                "--config-file", "configs/trainers/ZeroshotCLIP/toy.yaml",
                "--output-dir", str(tmp_path / "handcrafted"), "--eval-only"])
    train.main(["--root", str(data), *TOY, "--seed", "1", "--trainer", "HierarchicalCoOp",
                "--config-file", "configs/trainers/HierarchicalCoOp/toy.yaml",
                "--output-dir", str(tmp_path / "learned"), "DATASET.TEXT.DIR", str(knowledge)])
    handcrafted, learned = mean_ap(tmp_path / "handcrafted"), mean_ap(tmp_path / "learned")
    print(f"toy world mAP: hand-crafted {handcrafted:.2f}, learned on text {learned:.2f}")
    assert learned > handcrafted
