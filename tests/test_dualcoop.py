"""DualCoOp's parts: the asymmetric loss, the region aggregation, the prompt structure, the
partial-label mask; each against a computation written out here."""

import math

import numpy as np
import pytest
import torch
from objective_reference import asymmetric_loss as asymmetric_loss_by_hand

from hiprompt.baselines.dualcoop import DualPromptLearner, positive_margin, region_logits
from hiprompt.baselines.partial_labels import MASK_FILE, hide, known_mask, run_mask
from hiprompt.model.losses import asymmetric_loss


def test_asymmetric_loss_matches_dualcoop_entry_by_entry():
    logits = [[[0.3, -1.2, 2.0], [1.5, 0.4, -0.7]],  # image 0: [neg; pos] for 3 classes
              [[-2.0, 0.0, 4.0], [3.0, 0.1, -4.0]]]
    targets = [[1, 0, -1], [0, 1, 0]]
    got = asymmetric_loss(torch.tensor(logits), torch.tensor(targets))
    assert got.item() == pytest.approx(asymmetric_loss_by_hand(logits, targets, 2.0, 1.0, 0.05), rel=1e-6)
    # other settings are honoured
    got = asymmetric_loss(torch.tensor(logits), torch.tensor(targets), gamma_neg=4, gamma_pos=0, clip=0.0)
    assert got.item() == pytest.approx(asymmetric_loss_by_hand(logits, targets, 4, 0, 0.0), rel=1e-6)


def test_asymmetric_loss_focusing_weight_carries_no_gradient():
    logits = torch.tensor([[[0.2], [0.9]]], requires_grad=True)  # one positive entry
    asymmetric_loss(logits, torch.tensor([[1]]), gamma_pos=1.0).backward()
    p = 1 / (1 + math.exp(0.2 - 0.9))  # p_pos
    # d/d pos of -log(p) * w with w = (1 - p) held constant: -(1 - p) * w
    assert logits.grad[0, 1, 0].item() == pytest.approx(-(1 - p) * (1 - p), rel=1e-5)
    assert logits.grad[0, 0, 0].item() == pytest.approx((1 - p) * (1 - p), rel=1e-5)


def test_all_hidden_labels_give_zero_loss():
    assert asymmetric_loss(torch.randn(2, 2, 3), -torch.ones(2, 3)).item() == 0.0


def test_region_logits_follow_dualcoops_aggregation():
    gen = torch.Generator().manual_seed(0)
    feats, pos, neg = torch.randn(2, 5, 4, generator=gen), torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    got = region_logits(feats, pos, neg, spatial_scale=20.0, scale=5.0)
    f = feats.numpy() / np.linalg.norm(feats.numpy(), axis=-1, keepdims=True)
    for b in range(2):
        for c in range(3):
            cos_pos = f[b] @ (pos[c].numpy() / np.linalg.norm(pos[c].numpy()))  # [P]
            cos_neg = f[b] @ (neg[c].numpy() / np.linalg.norm(neg[c].numpy()))
            w = np.exp(20 * cos_pos) / np.exp(20 * cos_pos).sum()
            assert got[b, 1, c].item() == pytest.approx(5 * np.sum(w * 20 * cos_pos), rel=1e-4)
            assert got[b, 0, c].item() == pytest.approx(5 * np.sum(w * 20 * cos_neg), rel=1e-4)
    # the margin ranks as DualCoOp's probability softmax(neg, pos)[pos] does
    prob = torch.softmax(got.double(), dim=1)[:, 1]
    margin = positive_margin(got)
    assert torch.allclose(torch.sigmoid(margin.double()), prob, atol=1e-6)


def test_masked_positions_do_not_count():
    gen = torch.Generator().manual_seed(1)
    feats, pos, neg = torch.randn(1, 4, 8, generator=gen), torch.randn(2, 8, generator=gen), torch.randn(2, 8, generator=gen)
    padded = torch.cat([feats, 100 * torch.randn(1, 3, 8, generator=gen)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    assert torch.allclose(region_logits(padded, pos, neg, mask=mask), region_logits(feats, pos, neg), atol=1e-5)


def test_prompts_are_encoded_as_the_words_they_stand_for(tiny_clip):
    classes = ["dog", "cat", "traffic light"]
    learner = DualPromptLearner(tiny_clip, classes, n_ctx=2, csc=False)
    assert learner.positive.vectors["shared"].shape == (1, 2, tiny_clip.token_width)
    words = tiny_clip.token_embeddings(tiny_clip.tokenize(["a photo"]))[0, 1:3]  # [2, W]
    with torch.no_grad():
        learner.positive.vectors["shared"].copy_(words[None])
        learner.negative.vectors["shared"].copy_(words[None])
        positive, negative = learner.class_embeddings()
        expected, _, _ = tiny_clip.encode_text(tiny_clip.tokenize([f"a photo {c}." for c in classes]))
    assert torch.allclose(positive, expected, atol=1e-5) and torch.allclose(negative, expected, atol=1e-5)


def test_csc_prompts_have_a_context_per_class_and_positive_differs_from_negative(tiny_clip):
    learner = DualPromptLearner(tiny_clip, ["dog", "cat"], n_ctx=3, csc=True)
    assert learner.negative.vectors["class"].shape == (2, 3, tiny_clip.token_width)
    assert "shared" not in learner.positive.vectors
    positive, negative = learner.class_embeddings()
    assert positive.shape == negative.shape and positive.shape[0] == 2
    assert not torch.allclose(positive, negative)
    with pytest.raises(ValueError, match="N_CTX=0"):
        DualPromptLearner(tiny_clip, ["dog", "cat"], n_ctx=0, csc=False)


def test_partial_label_mask_is_seeded_kept_in_the_run_folder_and_checked(tmp_path):
    labels = (np.random.default_rng(0).random((400, 10)) < 0.3).astype(np.float32)
    paths = [f"/img/{i}.jpg" for i in range(400)]
    known = run_mask(tmp_path, labels, paths, portion=0.3, seed=5)
    assert known.shape == labels.shape and abs(known.mean() - 0.3) < 0.02
    assert (tmp_path / MASK_FILE).is_file()
    assert np.array_equal(known, known_mask(400, 10, 0.3, 5))
    assert np.array_equal(run_mask(tmp_path, labels, paths, portion=0.3, seed=5), known)  # reused
    assert not np.array_equal(known_mask(400, 10, 0.3, 6), known)
    with pytest.raises(ValueError, match=r"partial_labels.npz was made for other partial labels \(portion: 0.3"):
        run_mask(tmp_path, labels, paths, portion=0.5, seed=5)
    targets = hide(labels, known)
    assert set(np.unique(targets)) <= {-1.0, 0.0, 1.0}
    assert np.array_equal(targets[known], labels[known]) and (targets[~known] == -1).all()
