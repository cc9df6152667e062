"""A Dassl-shaped evaluator for multi-label test sets (metrics live in `hiprompt.training.metrics`).

`evaluate()` prints a table and writes `<cfg.OUTPUT_DIR>/results_<split>.json` atomically:
the headline metrics, per-class AP by class name, the counts behind them, the images that
could not be read (left out of the metrics), and what the scores were computed with: the
whole config (as run_info.json holds it; an --eval-only run may change the evaluation
settings), the checkpoint of the prompts, the protocol (`TEST.PROTOCOL`), the epoch of the
prompts scored and, under the peer protocol, how it was chosen (hiprompt/training/protocol.py).
`TEST.METRICS peer` replaces mAP and CP/CR/CF1/OP/OR/OF1 by the peers' conventions
(`hiprompt.training.metrics.peer_metrics`); the top-k metrics are common to both.
`TEST.SAVE_SCORES` also writes the scores (`scores_<split>.npz`).
"""

import io
import json
import os
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch
from tabulate import tabulate

from hiprompt.fileio import atomic_write_bytes, atomic_write_json
from hiprompt.registry import EVALUATOR_REGISTRY
from hiprompt.training.metrics import multilabel_metrics, peer_metrics


@EVALUATOR_REGISTRY.register()
class MultiLabelEvaluator:
    """Collects `[B, C]` scores and 0/1 labels batch by batch; `evaluate()` scores them all."""

    def __init__(self, cfg, classnames=None, lab2cname=None, split: str = "test", topk: int = 3, **kwargs):
        if classnames is None and lab2cname is not None:
            classnames = [lab2cname[i] for i in sorted(lab2cname)]
        self.classnames = list(classnames) if classnames is not None else None
        self.output_dir = cfg.OUTPUT_DIR
        self.split = split
        self.topk = topk
        test = cfg.get("TEST") or {}  # a bare config (no TEST node) gets the project's conventions
        self.convention = test.get("METRICS", "hiprompt")
        self.threshold = test.get("THRESHOLD", 0.5)
        self.save_scores = test.get("SAVE_SCORES", False)
        self.config = json.loads(json.dumps(cfg))  # tuples as lists, as in run_info.json
        self.reset()

    @property
    def results_path(self) -> str:
        return os.path.join(self.output_dir, f"results_{self.split}.json")

    @property
    def scores_path(self) -> str:
        return os.path.join(self.output_dir, f"scores_{self.split}.npz")

    def reset(self):
        self._scores, self._labels, self._ignore = [], [], []

    def process(self, scores: torch.Tensor, labels: torch.Tensor, ignore: Optional[torch.Tensor] = None):
        """scores [B, C], labels [B, C] (0/1), ignore [B, C] bool or None."""
        scores = torch.as_tensor(scores).detach().float().cpu().numpy()
        labels = torch.as_tensor(labels).detach().cpu().numpy()
        if scores.shape != labels.shape:
            raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
        if ignore is None:
            ignore = np.zeros(scores.shape, dtype=bool)
        self._scores.append(scores)
        self._labels.append(labels)
        self._ignore.append(torch.as_tensor(ignore).detach().cpu().numpy().astype(bool))

    def evaluate(self, unreadable=(), checkpoint=None, protocol="paper", epoch=None, selection=None) -> OrderedDict:
        """unreadable: paths of the test images that could not be read (not in the scores);
        checkpoint: the file the prompts were saved to or loaded from (None: not from one);
        protocol: TEST.PROTOCOL; epoch: the epoch of the prompts scored (None: not trained);
        selection: under the peer protocol, how that epoch was chosen
        (`PromptTraining.select_peer_epoch`)."""
        if not self._scores:
            raise RuntimeError("MultiLabelEvaluator.evaluate() called before any process()")
        scores = np.concatenate(self._scores)  # [N, C]
        labels = np.concatenate(self._labels)  # [N, C]
        ignore = np.concatenate(self._ignore)  # [N, C]
        classnames = self.classnames or [str(c) for c in range(scores.shape[1])]
        if len(classnames) != scores.shape[1]:
            raise ValueError(f"{len(classnames)} class names for {scores.shape[1]} score columns")

        if self.save_scores:  # scores [N, C] float32, labels [N, C], in the order of the readable images
            buffer = io.BytesIO()
            np.savez_compressed(buffer, scores=scores.astype(np.float32), labels=labels, ignore=ignore,
                                classnames=np.array(classnames))
            atomic_write_bytes(self.scores_path, buffer.getvalue())
        metrics = multilabel_metrics(scores, labels, ignore=ignore, topk=self.topk)
        per_class = metrics.pop("per_class_AP")
        if self.convention == "peer":  # mAP and the thresholded metrics by TaI-DPT's / DualCoOp's code
            metrics.update(peer_metrics(scores, labels, ignore=ignore, threshold=self.threshold))
        results = OrderedDict(
            (name, value) for name, value in metrics.items() if name not in ("num_images", "num_classes_evaluated")
        )  # mAP first: Dassl takes the first value as the run's result

        print(tabulate([[name, f"{value:.2f}"] for name, value in results.items()], headers=["metric", "%"]))
        print(f"{metrics['num_images']} images, {metrics['num_classes_evaluated']} classes with a positive")
        atomic_write_json(
            self.results_path,
            {
                "split": self.split,
                "topk": self.topk,
                "metric_convention": self.convention,
                "threshold": self.threshold if self.convention == "peer" else None,
                "num_images": metrics["num_images"],
                "num_classes_evaluated": metrics["num_classes_evaluated"],
                "unreadable_images": {"count": len(unreadable), "paths": [str(p) for p in unreadable]},
                "metrics": dict(results),
                "per_class_AP": dict(zip(classnames, per_class)),
                "checkpoint": checkpoint,
                "protocol": protocol,
                "epoch": epoch,
                "selection": selection,
                "config": self.config,
            },
        )
        return results
