"""Multi-label ranking and top-k metrics, in percent.

- mAP: the mean, over classes with at least one positive, of non-interpolated average
  precision (sklearn's `average_precision_score`: tied scores form one threshold).
  Classes without a positive are left out, with a warning saying how many.
- F1/P/R@k: each image's k highest-scoring classes are its predictions; counts are pooled
  over images: P = TP / (k * #images), R = TP / #ground-truth labels, F1 their harmonic mean.
- OP/OR/OF1: the same pooled counts on the same top-k predictions, with P = TP / #predictions
  (equal to P@k whenever every image has at least k evaluable classes).
- CP/CR/CF1: per-class precision TP_c / #predictions_c (0 for a class never predicted) and
  recall TP_c / #positives_c on the top-k predictions, averaged over the classes that have a
  positive; CF1 = 2 CP CR / (CP + CR).

An `ignore` mask [N, C] removes entries from every metric: from the class's ranking for AP,
and from the candidates for the top-k predictions (neither predicted nor ground truth).
Ties in top-k selection are broken by class order.

`peer_metrics` computes the same names by the conventions of TaI-DPT's and DualCoOp's code,
for comparing with their published numbers (docs/baselines.md, "Comparing with TaI-DPT and DualCoOp"):
- mAP: every class counts, one without a positive as AP 0; each class's images are ranked
  by `np.argsort(scores)[::-1]`, so tied scores are ranked by their order, not pooled;
  AP = Σ over positives of precision at its rank / (#positives + 1e-8).
- CP/CR/CF1, OP/OR/OF1: a prediction is a score above a threshold (DualCoOp: 0.5 on
  probabilities), not the top 3; per class P = TP/(TP+FP), R = TP/(TP+FN), F1 their harmonic
  mean, each 0 for a class without a true positive; CP, CR and CF1 are the means over all
  classes (CF1 a mean of per-class F1); OP/OR from the pooled counts, OF1 their harmonic mean.
"""

import warnings
from typing import Optional

import numpy as np

METRIC_CONVENTIONS = ("hiprompt", "peer")  # TEST.METRICS: multilabel_metrics, or peer_metrics


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP of one class; `scores` [N] float, `positives` [N] bool (>= 1 True)."""
    order = np.argsort(-scores, kind="stable")
    scores, positives = scores[order], positives[order]
    # The last index of each run of equal scores: one threshold per distinct score.
    last = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    tp = np.cumsum(positives)[last]  # [T]
    precision = tp / (last + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _harmonic(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _top_k_predictions(scores: np.ndarray, evaluable: np.ndarray, k: int) -> np.ndarray:
    """[N, C] bool: each row's k best evaluable classes."""
    ranked = np.where(evaluable, scores, -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :k]  # [N, k]
    predicted = np.zeros_like(evaluable)
    np.put_along_axis(predicted, order, True, axis=1)
    return predicted & evaluable


def multilabel_metrics(
    scores, labels, ignore: Optional[np.ndarray] = None, topk: int = 3
) -> dict:
    """Metrics of `scores` [N, C] against 0/1 `labels` [N, C]; see the module docstring.

    Returns floats in percent (`mAP`, `F1@k`, `P@k`, `R@k`, `CP`, `CR`, `CF1`, `OP`, `OR`,
    `OF1`), counts (`num_images`, `num_classes_evaluated`) and `per_class_AP` (a list with
    None for the classes left out).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be [N, C]")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if topk < 1:
        raise ValueError(f"topk={topk}: expected >= 1")
    evaluable = np.ones(scores.shape, dtype=bool) if ignore is None else ~np.asarray(ignore, dtype=bool)
    if evaluable.shape != scores.shape:
        raise ValueError(f"ignore {evaluable.shape} must have the shape of scores {scores.shape}")
    truth = (labels == 1) & evaluable  # [N, C]

    num_classes = scores.shape[1]
    has_positive = truth.any(axis=0)  # [C]
    if not has_positive.all():
        warnings.warn(
            f"{int((~has_positive).sum())} of {num_classes} classes have no positive image; "
            "they are left out of mAP and the per-class metrics",
            stacklevel=2,
        )
    per_class_ap = [
        average_precision(scores[evaluable[:, c], c], truth[evaluable[:, c], c]) if has_positive[c] else None
        for c in range(num_classes)
    ]
    evaluated = [ap for ap in per_class_ap if ap is not None]

    predicted = _top_k_predictions(scores, evaluable, topk)  # [N, C]
    hits = predicted & truth  # [N, C]
    tp, num_predicted, num_truth = int(hits.sum()), int(predicted.sum()), int(truth.sum())
    num_images = scores.shape[0]

    p_at_k = tp / (topk * num_images) if num_images else 0.0
    r_at_k = tp / num_truth if num_truth else 0.0
    op = tp / num_predicted if num_predicted else 0.0
    tp_c = hits.sum(axis=0)[has_positive]  # [C']
    cp = float(np.mean(tp_c / np.maximum(predicted.sum(axis=0)[has_positive], 1))) if evaluated else 0.0
    cr = float(np.mean(tp_c / truth.sum(axis=0)[has_positive])) if evaluated else 0.0

    percent = {
        "mAP": float(np.mean(evaluated)) if evaluated else 0.0,
        f"F1@{topk}": _harmonic(p_at_k, r_at_k),
        f"P@{topk}": p_at_k,
        f"R@{topk}": r_at_k,
        "CP": cp,
        "CR": cr,
        "CF1": _harmonic(cp, cr),
        "OP": op,
        "OR": r_at_k,
        "OF1": _harmonic(op, r_at_k),
    }
    result = {name: 100.0 * value for name, value in percent.items()}
    result["num_images"] = num_images
    result["num_classes_evaluated"] = len(evaluated)
    result["per_class_AP"] = [None if ap is None else 100.0 * ap for ap in per_class_ap]
    return result


def peer_average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP as TaI-DPT's and DualCoOp's `average_precision` computes it (see the module docstring)."""
    order = np.argsort(scores)[::-1]
    hits = positives[order].astype(bool)  # [N]
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hit.sum() / (hits.sum() + 1e-8))


def peer_metrics(scores, labels, ignore: Optional[np.ndarray] = None, threshold: float = 0.5) -> dict:
    """`mAP`, `CP`, `CR`, `CF1`, `OP`, `OR`, `OF1` in percent by the peers' conventions (module
    docstring); `ignore` [N, C] removes entries as in `multilabel_metrics`."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be [N, C]")
    evaluable = np.ones(scores.shape, dtype=bool) if ignore is None else ~np.asarray(ignore, dtype=bool)
    truth = (labels == 1) & evaluable  # [N, C]
    num_classes = scores.shape[1]
    ap = [peer_average_precision(scores[evaluable[:, c], c], truth[evaluable[:, c], c]) for c in range(num_classes)]
    predicted = (scores > threshold) & evaluable  # [N, C]
    tp = (predicted & truth).sum(axis=0).astype(np.float64)  # [C]
    fp = (predicted & ~truth & evaluable).sum(axis=0)
    fn = (~predicted & truth).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_c = np.where(tp > 0, tp / (tp + fp), 0.0)
        r_c = np.where(tp > 0, tp / (tp + fn), 0.0)
        f_c = np.where(tp > 0, 2 * p_c * r_c / (p_c + r_c), 0.0)
    op = tp.sum() / (tp.sum() + fp.sum()) if tp.sum() + fp.sum() else 0.0
    o_r = tp.sum() / (tp.sum() + fn.sum()) if tp.sum() + fn.sum() else 0.0
    percent = {"mAP": float(np.mean(ap)), "CP": float(p_c.mean()), "CR": float(r_c.mean()),
               "CF1": float(f_c.mean()), "OP": op, "OR": o_r, "OF1": _harmonic(op, o_r)}
    return {name: 100.0 * value for name, value in percent.items()}
