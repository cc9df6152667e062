import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from hiprompt.training.metrics import average_precision, multilabel_metrics


def test_hand_computed_tiny_case():
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.7, 0.6, 0.5]])
    labels = np.array([[1, 0, 0, 1], [0, 1, 1, 0]])
    m = multilabel_metrics(scores, labels, topk=2)
    assert m["per_class_AP"] == pytest.approx([100, 50, 100, 50])
    assert m["mAP"] == pytest.approx(75.0)
    # top-2: image 0 -> {0, 1} (1 hit), image 1 -> {1, 2} (2 hits): TP 3 of 4 predicted, 4 true
    assert m["P@2"] == pytest.approx(75.0) and m["R@2"] == pytest.approx(75.0) and m["F1@2"] == pytest.approx(75.0)
    assert m["OP"] == m["P@2"] and m["OR"] == m["R@2"]
    # per class precision 1, 1/2, 1, 0 (never predicted); recall 1, 1, 1, 0
    assert m["CP"] == pytest.approx(62.5) and m["CR"] == pytest.approx(75.0)
    assert m["CF1"] == pytest.approx(100 * 2 * 0.625 * 0.75 / 1.375)
    assert m["num_images"] == 2 and m["num_classes_evaluated"] == 4


def test_top3_precision_divides_by_three_per_image():
    scores = np.array([[0.9, 0.8, 0.7, 0.1, 0.0]])
    labels = np.array([[1, 0, 0, 0, 1]])
    with pytest.warns(UserWarning, match="3 of 5 classes have no positive"):
        m = multilabel_metrics(scores, labels)
    assert m["P@3"] == pytest.approx(100 / 3) and m["R@3"] == pytest.approx(50.0)
    assert m["F1@3"] == pytest.approx(100 * 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert m["num_classes_evaluated"] == 2 and m["per_class_AP"][1] is None


def test_ties_count_as_one_threshold_like_sklearn():
    scores = np.array([0.5, 0.5, 0.5, 0.2])
    positives = np.array([True, False, False, True])
    assert average_precision(scores, positives) == pytest.approx(average_precision_score(positives, scores))
    assert average_precision(scores, positives) == pytest.approx(0.5 * (1 / 3) + 0.5 * 0.5)


def _independent_topk(scores, labels, k):
    tp = predicted = 0
    tp_c = np.zeros(scores.shape[1])
    pred_c = np.zeros(scores.shape[1])
    for row, truth in zip(scores, labels):
        top = sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]
        for c in top:
            predicted += 1
            pred_c[c] += 1
            if truth[c]:
                tp += 1
                tp_c[c] += 1
    return tp, predicted, tp_c, pred_c


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 25), st.integers(3, 8), st.booleans())
def test_matches_independent_implementations(seed, num_images, num_classes, coarse):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, (num_images, num_classes)).astype(float) if coarse else rng.random((num_images, num_classes))
    labels = (rng.random((num_images, num_classes)) < 0.35).astype(int)
    labels[0, 0] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes without a positive are expected here
        m = multilabel_metrics(scores, labels)
    has_pos = labels.sum(axis=0) > 0
    expected_ap = [average_precision_score(labels[:, c], scores[:, c]) for c in range(num_classes) if has_pos[c]]
    assert m["mAP"] == pytest.approx(100 * np.mean(expected_ap))

    tp, predicted, tp_c, pred_c = _independent_topk(scores, labels, 3)
    assert m["P@3"] == pytest.approx(100 * tp / (3 * num_images))
    assert m["R@3"] == pytest.approx(100 * tp / labels.sum())
    assert m["OP"] == pytest.approx(100 * tp / predicted)
    cp = np.mean([tp_c[c] / pred_c[c] if pred_c[c] else 0.0 for c in range(num_classes) if has_pos[c]])
    cr = np.mean([tp_c[c] / labels[:, c].sum() for c in range(num_classes) if has_pos[c]])
    assert m["CP"] == pytest.approx(100 * cp) and m["CR"] == pytest.approx(100 * cr)


def test_ignored_entries_leave_ranking_and_topk():
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])
    labels = np.array([[0, 1], [1, 0], [0, 1]])
    ignore = np.array([[True, False], [False, False], [False, False]])
    m = multilabel_metrics(scores, labels, ignore=ignore, topk=1)
    # class 0 ranked without image 0: [0.8 (pos), 0.1] -> AP 1
    assert m["per_class_AP"][0] == pytest.approx(100.0)
    # image 0's only evaluable class is 1 (a hit), image 1 -> class 0 (hit), image 2 -> class 1 (hit)
    assert m["P@1"] == pytest.approx(100.0) and m["R@1"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        (np.zeros((2, 3)), np.zeros((2, 2)), "must both be"),
        (np.array([[np.nan, 0.0]]), np.array([[1, 0]]), "NaN"),
        (np.zeros((1, 2)), np.array([[2, 0]]), "0 or 1"),
    ],
)
def test_bad_inputs_are_errors(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        multilabel_metrics(scores, labels)


def test_an_image_with_fewer_than_k_evaluable_classes_predicts_fewer():
    """Top-3 with 4 classes, image 1 having only 2 evaluable ones (the others ignored), image 2
    none positive. Worked by hand:
    image 0: scores .9 .1 .5 .3, truth {0, 3}: top-3 {0, 2, 3} -> 2 hits, 3 predictions
    image 1: only classes 1, 2 evaluable, truth {1}: predictions {1, 2} -> 1 hit, 2 predictions
    image 2: truth {}: top-3 {1, 2, 3} -> 0 hits, 3 predictions
    TP 3, predictions 8, ground truth 3 (image 1's ignored positive class 0 does not count)."""
    scores = np.array([[0.9, 0.1, 0.5, 0.3], [0.8, 0.2, 0.6, 0.7], [0.0, 0.4, 0.3, 0.2]])
    labels = np.array([[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    ignore = np.array([[False] * 4, [True, False, False, True], [False] * 4])
    with pytest.warns(UserWarning, match="1 of 4 classes have no positive"):  # class 2
        m = multilabel_metrics(scores, labels, ignore=ignore, topk=3)
    assert m["P@3"] == pytest.approx(100 * 3 / 9)  # divided by k per image, as the convention has it
    assert m["OP"] == pytest.approx(100 * 3 / 8)  # divided by what was predicted
    assert m["R@3"] == pytest.approx(100.0) and m["OR"] == pytest.approx(100.0)
    assert m["F1@3"] == pytest.approx(100 * 2 * (1 / 3) / (1 / 3 + 1))
    assert m["OF1"] == pytest.approx(100 * 2 * (3 / 8) / (3 / 8 + 1))
    # per class: predictions 0:{img0} 1:{img1, img2} 2:{img0, img1, img2} 3:{img0, img2};
    # hits 0:1 1:1 2:0 3:1 -> CP mean(1, 1/2, 0, 1/2) over the classes with a positive (0, 1, 3)
    assert m["num_classes_evaluated"] == 3
    assert m["CP"] == pytest.approx(100 * (1 + 0.5 + 0.5) / 3) and m["CR"] == pytest.approx(100.0)


def test_fewer_classes_than_k_predicts_every_class():
    scores = np.array([[0.2, 0.9], [0.6, 0.1]])
    labels = np.array([[0, 1], [1, 1]])
    m = multilabel_metrics(scores, labels, topk=3)
    # each image predicts both classes: TP 3 of 4 predictions, 3 ground truth; P@3 = 3 / (3 * 2)
    assert m["P@3"] == pytest.approx(50.0) and m["OP"] == pytest.approx(75.0) and m["R@3"] == pytest.approx(100.0)
