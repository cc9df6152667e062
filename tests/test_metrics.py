import warnings
from pathlib import Path

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


def test_unsigned_integer_scores_rank_as_numbers():
    """Vote counts in uint8 rank by value: negating them without the float cast would wrap
    around (-1 -> 255) and reverse the ranking. Checked against sklearn and the loop above."""
    scores = np.array([[3, 1, 0, 2], [0, 2, 5, 1], [1, 4, 2, 0], [2, 0, 1, 3]], dtype=np.uint8)
    labels = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 0], [1, 0, 0, 1]])
    m = multilabel_metrics(scores, labels, topk=2)
    expected_ap = [average_precision_score(labels[:, c], scores[:, c].astype(float)) for c in range(4)]
    assert m["per_class_AP"] == pytest.approx([100 * ap for ap in expected_ap])
    tp, predicted, _, _ = _independent_topk(scores.astype(float), labels, 2)
    assert (tp, predicted) == (7, 8)
    assert m["P@2"] == pytest.approx(100 * 7 / 8) and m["R@2"] == pytest.approx(100 * 7 / 7)


def test_ignore_given_as_zeros_and_ones():
    """An ignore mask of 0/1 integers reads as the booleans (not as ~1 = -2, ~0 = -1); the
    numbers of test_ignored_entries_leave_ranking_and_topk."""
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])
    labels = np.array([[0, 1], [1, 0], [0, 1]])
    m = multilabel_metrics(scores, labels, ignore=np.array([[1, 0], [0, 0], [0, 0]]), topk=1)
    assert m["per_class_AP"][0] == pytest.approx(100.0)
    assert m["P@1"] == pytest.approx(100.0) and m["R@1"] == pytest.approx(100.0)


def test_no_hit_gives_zero_f1_not_a_division():
    """Every top-1 prediction wrong: P, R and every F1 are 0 (the harmonic mean of 0 and 0 is 0)."""
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    labels = np.array([[0, 1], [1, 0]])
    m = multilabel_metrics(scores, labels, topk=1)
    for name in ("P@1", "R@1", "F1@1", "CP", "CR", "CF1", "OP", "OR", "OF1"):
        assert m[name] == 0.0, name
    assert m["mAP"] == pytest.approx(50.0)  # each class: its positive ranked second of two


@pytest.mark.parametrize("case", ["no images", "no positive", "all ignored"])
def test_degenerate_inputs_give_zeros(case):
    """Nothing to divide by: no image (P@k, OP), no positive label (R@k, mAP, CP, CR), nothing
    predicted (OP): each metric is 0, never a division error or a 100."""
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    labels, ignore = np.array([[1, 0, 1], [0, 1, 0]]), None
    if case == "no images":
        scores, labels = scores[:0], labels[:0]
    elif case == "no positive":
        labels = np.zeros_like(labels)
    else:
        ignore = np.ones(scores.shape, dtype=bool)
    with pytest.warns(UserWarning, match="3 of 3 classes have no positive"):
        m = multilabel_metrics(scores, labels, ignore=ignore)
    for name in ("mAP", "F1@3", "P@3", "R@3", "CP", "CR", "CF1", "OP", "OR", "OF1"):
        assert m[name] == 0.0, name
    assert m["num_images"] == len(scores) and m["num_classes_evaluated"] == 0 and m["per_class_AP"] == [None] * 3


def test_missing_positive_warning_points_at_the_caller():
    """The whole warning text, attributed (stacklevel 2) to the caller, not to metrics.py
    (under mutmut a trampoline frame stands between, so only "not metrics.py" is asserted)."""
    with pytest.warns(UserWarning) as record:
        multilabel_metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1, 0], [1, 0]]))
    assert len(record) == 1
    assert str(record[0].message) == ("1 of 2 classes have no positive image; "
                                      "they are left out of mAP and the per-class metrics")
    assert Path(record[0].filename).name != "metrics.py"


@pytest.mark.parametrize(
    "scores, labels, kwargs, message",
    [
        (np.zeros((2, 3)), np.zeros((2, 2)), {}, r"scores (2, 3) and labels (2, 2) must both be [N, C]"),
        (np.zeros(3), np.zeros(3), {}, r"scores (3,) and labels (3,) must both be [N, C]"),
        (np.array([[np.inf, 0.0]]), np.array([[1, 0]]), {}, "scores contain NaN or infinite values"),
        (np.zeros((1, 2)), np.array([[2, 0]]), {}, "labels must be 0 or 1"),
        (np.zeros((1, 2)), np.array([[1, 0]]), {"topk": 0}, "topk=0: expected >= 1"),
        (np.zeros((1, 2)), np.array([[1, 0]]), {"ignore": np.zeros((2, 1))},
         "ignore (2, 1) must have the shape of scores (1, 2)"),
    ],
)
def test_bad_inputs_are_named_in_full(scores, labels, kwargs, message):
    with pytest.raises(ValueError) as error:
        multilabel_metrics(scores, labels, **kwargs)
    assert str(error.value) == message
