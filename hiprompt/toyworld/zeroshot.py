"""Zero-shot check of the toy CLIP: hand-crafted prompts scored on held-out world images.

    python -m hiprompt.toyworld.zeroshot --n-images 400 --seed 1 [--world toy80] [--weights FILE]

Prints mAP of the global, dense and fused (λ2 · global + (1 − λ2) · dense) scores, and of
random scores, so the shipped weights can be checked against docs/toyworld.md (or a
candidate's, `--weights`, before it replaces them).
"""

import argparse

import numpy as np
import torch

from hiprompt.model.scoring import fuse, global_scores, local_scores
from hiprompt.toyworld.draw import make_image
from hiprompt.toyworld.model import images_to_tensor, load_toy_clip
from hiprompt.toyworld.world import TOY, World
from hiprompt.toyworld.worlds import WORLDS, get_world
from hiprompt.training.metrics import multilabel_metrics

PROMPT = "a photo of a {}."
DENSE_TAU = 0.02
FUSION_WEIGHT = 0.65  # λ2


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """mAP in percent ([B, C] scores and labels), as the evaluator computes it."""
    return multilabel_metrics(scores, labels)["mAP"]


def held_out_set(seed: int, n_images: int, world: World = TOY):
    """(images [B, 3, H, W], labels [B, C]) of world images 0..n-1 of `seed`."""
    images, labels = [], np.zeros((n_images, len(world.class_names)), dtype=np.int64)
    for index in range(n_images):
        image, sample = make_image(seed, index, world)
        images.append(image)
        for name in sample.labels:
            labels[index, world.class_names.index(name)] = 1
    return images_to_tensor(images), labels


@torch.no_grad()
def zero_shot_scores(backbone, images: torch.Tensor, tau: float = DENSE_TAU, world: World = TOY):
    """Global and dense class scores ([B, C] each) of hand-crafted prompts.

    dense_i = Σ_j softmax_j(s_ij / tau) · s_ij over image positions j, cosine similarities.
    """
    classes, _, _ = backbone.encode_text(backbone.tokenize(PROMPT.format(n) for n in world.class_names))  # [C, D]
    global_feats, dense_feats = backbone.encode_image_features(images)  # [B, D], [B, P, D]
    return global_scores(global_feats, classes), local_scores(dense_feats, classes, tau)


def evaluate(n_images: int = 400, seed: int = 1, tau: float = DENSE_TAU, weight: float = FUSION_WEIGHT,
             world: World = TOY, weights=None) -> dict:
    """mAP (percent) of global, dense, fused and random scores on held-out images, with the
    world's shipped CLIP or the state-dict file `weights`."""
    backbone = load_toy_clip(weights, world=world)
    images, labels = held_out_set(seed, n_images, world)
    global_score, dense_score = zero_shot_scores(backbone, images, tau, world)
    fused = fuse(global_score, dense_score, weight)
    random_scores = np.random.default_rng(seed).random(labels.shape)
    return {
        "global": mean_average_precision(global_score.numpy(), labels),
        "dense": mean_average_precision(dense_score.numpy(), labels),
        "fused": mean_average_precision(fused.numpy(), labels),
        "random": mean_average_precision(random_scores, labels),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default=TOY.name, choices=sorted(WORLDS), help="which toy world")
    parser.add_argument("--n-images", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1, help="world seed of the held-out images (pretraining uses 0)")
    parser.add_argument("--tau", type=float, default=DENSE_TAU)
    parser.add_argument("--weight", type=float, default=FUSION_WEIGHT, help="λ2, the global score's weight")
    parser.add_argument("--weights", help="a state-dict file of the world's CLIP config (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = evaluate(args.n_images, args.seed, args.tau, args.weight, get_world(args.world), args.weights)
    print(" ".join(f"{name} mAP {value:.1f}" for name, value in results.items()))


if __name__ == "__main__":
    main()
