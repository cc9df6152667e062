"""How well DualCoOp's prompts can fit a labelled image set (its training set) on a frozen CLIP.

    python scripts/dualcoop_fit.py --images data/toy80-train --backbone toy80 --prompts shared --optim sgd
    python scripts/dualcoop_fit.py --images data/toy80-train --backbone toy80 --prompts free --optim adam --lr 0.01

Trains on every label of a CustomMultiLabel folder (labels.csv, classnames.txt) with
DualCoOp's region aggregation and asymmetric loss (weight 0.03, as its `-pp 0.5` setting)
on the cached dense image features, in batches of 32 drawn with a fixed seed, and prints
the mAP on the same images every fifth of the steps. `--prompts`: `shared` (DualCoOp's
default, one positive and one negative context for all classes), `csc` (a context per
class), or `free` (the class embeddings themselves as parameters, no text encoder: what
the aggregation and loss can fit on these features). A fit far below `free` means the
prompts, not the features, hold DualCoOp back.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from hiprompt.baselines.dualcoop import DualCoOpModel, positive_margin
from hiprompt.cache.image_features import image_features
from hiprompt.clip import build_clip
from hiprompt.config import get_cfg_default
from hiprompt.data.custom import read_custom_csv
from hiprompt.data.image_dataset import ImageFeatureDataset
from hiprompt.data.transforms import TestTransform
from hiprompt.training.metrics import multilabel_metrics

LOSS_WEIGHT = 0.03
BATCH_SIZE = 32


class FreeEmbeddings(torch.nn.Module):
    """Positive and negative class embeddings ([C, D] each) as parameters, in the place of
    DualCoOp's prompts."""

    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.positive = torch.nn.Parameter(0.1 * torch.randn(num_classes, width))
        self.negative = torch.nn.Parameter(0.1 * torch.randn(num_classes, width))

    def class_embeddings(self):
        return self.positive, self.negative


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", required=True, type=Path, help="a CustomMultiLabel folder")
    parser.add_argument("--backbone", default="toy80", help="backbone name (MODEL.BACKBONE.NAME)")
    parser.add_argument("--weights", default="packaged", help="its weights (MODEL.BACKBONE.WEIGHTS)")
    parser.add_argument("--size", type=int, default=128, help="input size in pixels")
    parser.add_argument("--prompts", choices=("shared", "csc", "free"), default="shared")
    parser.add_argument("--optim", choices=("sgd", "adam"), default="sgd", help="sgd: momentum 0.9 (DualCoOp's)")
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    image_set = read_custom_csv(args.images / "labels.csv", args.images / "classnames.txt")
    clip = build_clip(args.backbone, args.weights)
    transform = TestTransform(size=(args.size, args.size))
    feats = image_features(clip, ImageFeatureDataset.for_test(image_set, transform))
    dense = torch.from_numpy(np.asarray(feats.dense_feats, dtype=np.float32))  # [N, P, D]
    labels = torch.from_numpy(np.asarray(image_set.labels, dtype=np.float32))  # [N, C]

    free = FreeEmbeddings(labels.shape[1], dense.shape[-1]) if args.prompts == "free" else None
    dc = get_cfg_default().TRAINER.DUALCOOP
    dc.defrost()
    dc.CSC = args.prompts == "csc"
    dc.LOSS_WEIGHT = LOSS_WEIGHT
    model = DualCoOpModel(clip, list(image_set.classnames), dc)
    if free is not None:
        model.prompts = free  # in the place of the prompt learner: the same loss and scores
    params = list(model.prompts.parameters())
    if args.optim == "sgd":
        optimiser = torch.optim.SGD(params, lr=args.lr, momentum=0.9)
    else:
        optimiser = torch.optim.Adam(params, lr=args.lr)

    generator = torch.Generator().manual_seed(args.seed)
    report_every = max(1, args.steps // 5)
    for step in range(args.steps):
        index = torch.randint(0, len(labels), (BATCH_SIZE,), generator=generator)
        loss, _ = model.loss(dense[index], labels[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if (step + 1) % report_every == 0:
            with torch.no_grad():
                scores = positive_margin(model.logits(dense, model.prompts.class_embeddings())).numpy()  # [N, C]
            fit = multilabel_metrics(scores, labels.numpy())["mAP"]
            print(f"{args.prompts} {args.optim} lr {args.lr} step {step + 1}: batch loss {loss.item():.3f}, "
                  f"mAP on the training images {fit:.2f}", flush=True)


if __name__ == "__main__":
    main()
