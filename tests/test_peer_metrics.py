"""The peers' metric conventions (TaI-DPT's and DualCoOp's code) beside the project's, on
numbers worked out by hand."""

import json
import warnings

import numpy as np
import pytest
from yacs.config import CfgNode as CN

from hiprompt.training.evaluation import MultiLabelEvaluator
from hiprompt.training.metrics import multilabel_metrics, peer_metrics

# class 0: a positive on top, then a tie of a positive and a negative at 0.5; class 1: no positive
SCORES = np.array([[0.9, 0.2], [0.5, 0.8], [0.5, 0.3], [0.1, 0.4]])
LABELS = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])


def test_peer_map_counts_empty_classes_as_zero_and_ranks_ties_by_order():
    # ranked by np.argsort(s)[::-1]: images 0, 2, 1, 3 -> positives at ranks 1 and 2 -> AP 1
    assert peer_metrics(SCORES, LABELS)["mAP"] == pytest.approx((1.0 + 0.0) / 2 * 100, abs=1e-5)
    # the project's: class 1 left out; the tie is one threshold: AP = 1/2 * 1 + 1/2 * 2/3
    with pytest.warns(UserWarning, match="1 of 2 classes have no positive"):
        assert multilabel_metrics(SCORES, LABELS)["mAP"] == pytest.approx((0.5 + 0.5 * 2 / 3) * 100)


def test_peer_thresholded_metrics_average_per_class_f1():
    got = peer_metrics(SCORES, LABELS, threshold=0.5)  # predicted: (0, 0) and (1, 1); 0.5 is not above
    # class 0: TP 1, FP 0, FN 1 -> P 1, R 1/2, F1 2/3; class 1: TP 0 -> all 0
    assert got["CP"] == pytest.approx(50.0) and got["CR"] == pytest.approx(25.0)
    assert got["CF1"] == pytest.approx(100 / 3)  # mean of per-class F1, not F1 of CP and CR (40)
    # pooled: TP 1, FP 1, FN 1
    assert got["OP"] == pytest.approx(50.0) and got["OR"] == pytest.approx(50.0) and got["OF1"] == pytest.approx(50.0)


def test_conventions_agree_on_continuous_scores_where_every_class_has_a_positive():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 6)) < 0.3).astype(int)
    labels[0] = 1
    scores = rng.normal(size=labels.shape) + labels
    assert peer_metrics(scores, labels)["mAP"] == pytest.approx(multilabel_metrics(scores, labels)["mAP"], abs=1e-5)


def test_evaluator_reports_the_peer_convention_when_asked(tmp_path):
    cfg = CN()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST = CN()
    cfg.TEST.METRICS = "peer"
    cfg.TEST.THRESHOLD = 0.5
    evaluator = MultiLabelEvaluator(cfg, classnames=["a", "b"])
    evaluator.process(SCORES, LABELS)
    with pytest.warns(UserWarning):
        results = evaluator.evaluate()
    assert results["mAP"] == pytest.approx(50.0, abs=1e-5) and results["CF1"] == pytest.approx(100 / 3)
    with pytest.warns(UserWarning):
        top3 = multilabel_metrics(SCORES, LABELS)["F1@3"]
    assert results["F1@3"] == pytest.approx(top3)  # top-3: one convention
    written = json.loads((tmp_path / "results_test.json").read_text())
    assert written["metric_convention"] == "peer" and written["threshold"] == 0.5


# threshold 0.5; class 0: TP 2 (rows 0, 2), FP 1 (row 1), FN 2 (rows 3, 4);
# class 1: TP 2 (rows 2, 4), FP 1 (row 0), FN 1 (row 1); class 2: nothing predicted, no positive
HAND_SCORES = np.array([[0.9, 0.8, 0.1], [0.7, 0.3, 0.2], [0.6, 0.55, 0.3], [0.2, 0.4, 0.4], [0.1, 0.95, 0.45]])
HAND_LABELS = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0]])


def test_peer_metrics_worked_by_hand_on_three_classes():
    """Per class P = TP/(TP+FP), R = TP/(TP+FN), F1; a class with TP 0 (here also nothing
    predicted: 0/0) counts 0 and raises no warning; CF1 the mean of the per-class F1."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = peer_metrics(HAND_SCORES, HAND_LABELS)  # the default threshold, 0.5
    p, r = [2 / 3, 2 / 3, 0.0], [2 / 4, 2 / 3, 0.0]
    f = [2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2), 2 / 3, 0.0]
    assert got["CP"] == pytest.approx(100 * np.mean(p)) and got["CR"] == pytest.approx(100 * np.mean(r))
    assert got["CF1"] == pytest.approx(100 * np.mean(f))
    # pooled: TP 4, FP 2, FN 3
    assert got["OP"] == pytest.approx(100 * 4 / 6) and got["OR"] == pytest.approx(100 * 4 / 7)
    assert got["OF1"] == pytest.approx(100 * 2 * (4 / 6) * (4 / 7) / (4 / 6 + 4 / 7))
    # ranks by descending score; class 0: positives at ranks 1, 3, 4, 5; class 1: 1, 3, 5;
    # AP = sum of precision at each positive / (#positives + 1e-8); class 2: 0
    ap0 = (1 + 2 / 3 + 3 / 4 + 4 / 5) / (4 + 1e-8)
    ap1 = (1 + 2 / 3 + 3 / 5) / (3 + 1e-8)
    assert got["mAP"] == pytest.approx(100 * (ap0 + ap1) / 3, rel=1e-12)


def test_peer_metrics_with_an_ignore_mask_of_zeros_and_ones():
    """Ignoring class 0's false positive (row 1) and class 1's missed positive (row 1)."""
    ignore = np.zeros(HAND_LABELS.shape, dtype=int)
    ignore[1, :2] = 1
    got = peer_metrics(HAND_SCORES, HAND_LABELS, ignore=ignore)
    # class 0: TP 2, FP 0, FN 2 -> P 1, R 1/2; class 1: TP 2, FP 1, FN 0 -> P 2/3, R 1
    assert got["CP"] == pytest.approx(100 * (1 + 2 / 3) / 3) and got["CR"] == pytest.approx(100 * (1 / 2 + 1) / 3)
    assert got["OP"] == pytest.approx(100 * 4 / 5) and got["OR"] == pytest.approx(100 * 4 / 6)
    # class 0 without row 1: positives at ranks 1-4 -> AP 1; class 1 without row 1: 0.95, 0.8, 0.55 -> 1, 2/3
    ap0, ap1 = 4 / (4 + 1e-8), (1 + 2 / 3) / (2 + 1e-8)
    assert got["mAP"] == pytest.approx(100 * (ap0 + ap1) / 3, rel=1e-12)


def test_peer_metrics_with_nothing_predicted_or_no_positive_are_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nothing = peer_metrics(HAND_SCORES, HAND_LABELS, threshold=1.0)
        no_positive = peer_metrics(HAND_SCORES, np.zeros_like(HAND_LABELS))
    assert all(nothing[name] == 0.0 for name in ("CP", "CR", "CF1", "OP", "OR", "OF1"))
    assert all(no_positive[name] == 0.0 for name in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"))


@pytest.mark.parametrize("scores, labels", [(np.zeros((2, 3)), np.zeros((2, 2))), (np.zeros(3), np.zeros(3))])
def test_peer_metrics_refuse_mismatched_shapes(scores, labels):
    with pytest.raises(ValueError) as error:
        peer_metrics(scores, labels)
    assert str(error.value) == f"scores {scores.shape} and labels {labels.shape} must both be [N, C]"
