"""The method's pieces against hand-computed values, and its structural guarantees."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hiprompt.model.losses import order_loss, ranking_loss
from hiprompt.model.prompt_learner import HierarchicalPromptLearner, slot_assignment
from hiprompt.model.scoring import fuse, global_scores, local_scores


def test_ranking_loss_hand_computed():
    scores = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.8, 0.3]])
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    # sample 1: pairs (0,1): 1-0.9+0.2=0.3, (0,2): 1-0.9+0.5=0.6 -> sum 0.9, mean 0.45
    # sample 2: pairs (1,0): 1-0.8+0.1=0.3, (2,0): 1-0.3+0.1=0.8 -> sum 1.1, mean 0.55
    assert ranking_loss(scores, labels, margin=1.0).item() == pytest.approx(1.0)
    assert ranking_loss(scores, labels, margin=1.0, reduction="mean").item() == pytest.approx(0.5)


def test_default_ranking_loss_is_eq12_pair_sum_averaged_over_samples():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 9, generator=generator) * 2
    labels = (torch.rand(6, 9, generator=generator) < 0.3).float()
    labels[0] = 1.0  # no negative: no pair, left out of the average
    labels[1, 0] = 1.0  # every other sample has a positive and a negative
    margin = 1.0
    per_sample = []
    for row_scores, row_labels in zip(scores.tolist(), labels.tolist()):
        positives = [s for s, y in zip(row_scores, row_labels) if y == 1]
        negatives = [s for s, y in zip(row_scores, row_labels) if y == 0]
        if positives and negatives:
            per_sample.append(sum(max(0.0, margin - p + n) for p in positives for n in negatives))
    expected = sum(per_sample) / len(per_sample)
    assert len(per_sample) == 5
    assert ranking_loss(scores, labels, margin).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="expected one of"):
        ranking_loss(scores, labels, margin, reduction="max")


def test_ranking_loss_ignores_samples_without_negatives_and_is_zero_beyond_margin():
    scores = torch.tensor([[5.0, 0.0], [1.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert ranking_loss(scores, labels, margin=1.0).item() == 0.0


def test_order_loss_value_and_direction():
    learned = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    hand = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = math.e / (math.e + 1)  # learned rows: softmax([1, 0]) (and its mirror)
    kl_learned_hand = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    kl_hand_learned = 0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p))
    value = order_loss(learned, hand, temperature=1.0, direction="learned_to_hand").item()
    assert value == pytest.approx(kl_learned_hand, abs=1e-6)
    assert value != pytest.approx(kl_hand_learned, abs=1e-3)
    reverse = order_loss(learned, hand, temperature=1.0, direction="hand_to_learned").item()
    assert reverse == pytest.approx(kl_hand_learned, abs=1e-6)
    # ... which is what F.kl_div(log D_learned, D_hand) computes, averaged over rows
    kl_div = F.kl_div(F.log_softmax(learned @ learned.t(), dim=-1), torch.softmax(hand @ hand.t(), dim=-1),
                      reduction="batchmean")
    assert reverse == pytest.approx(kl_div.item(), abs=1e-6)
    assert order_loss(hand, hand, temperature=1.0, direction="learned_to_hand").item() == pytest.approx(0.0, abs=1e-7)


def test_order_loss_gradient_reaches_learned_side_only():
    learned = torch.randn(4, 8, requires_grad=True)
    hand = torch.randn(4, 8, requires_grad=True)
    order_loss(learned, hand, 0.1, "learned_to_hand").backward()
    assert learned.grad is not None and learned.grad.abs().sum() > 0
    assert hand.grad is None


def test_local_aggregation_hand_computed_and_masked():
    features = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [B=1, T=2, D=2]
    classes = torch.tensor([[1.0, 0.0]])  # cosine 1 with token 0, 0 with token 1
    weight = math.e / (math.e + 1)
    assert local_scores(features, classes, tau=1.0).item() == pytest.approx(weight)
    mask = torch.tensor([[True, False]])
    assert local_scores(features, classes, tau=1.0, mask=mask).item() == pytest.approx(1.0)
    only_second = torch.tensor([[False, True]])
    assert local_scores(features, classes, tau=1.0, mask=only_second).item() == pytest.approx(0.0)


def test_global_scores_are_cosines_and_fusion_weights():
    feats = torch.tensor([[3.0, 0.0]])
    classes = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    assert global_scores(feats, classes).tolist()[0] == pytest.approx([1 / math.sqrt(2), 0.0])
    fused = fuse(torch.tensor([1.0]), torch.tensor([0.0]), 0.65)
    assert fused.item() == pytest.approx(0.65)


def test_global_scores_normalise_each_feature_vector_whatever_the_leading_dimensions():
    """[2, 3, D] features: each of the 6 vectors scored on its own (cosines worked out in numpy),
    not normalised across the batch or the middle dimension."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 4, generator=gen) * torch.tensor([1.0, 5.0, 0.2])[None, :, None]  # unequal norms
    classes = torch.randn(5, 4, generator=gen)
    f, c = feats.numpy().astype(np.float64), classes.numpy().astype(np.float64)
    want = np.einsum("btd,cd->btc", f / np.linalg.norm(f, axis=-1, keepdims=True),
                     c / np.linalg.norm(c, axis=-1, keepdims=True))
    np.testing.assert_allclose(global_scores(feats, classes).numpy(), want, rtol=1e-5, atol=1e-6)


def test_slot_assignment_groups_then_own_slots():
    slots = slot_assignment(["a", "b", "c", "d"], [["b", "d"], ["c", "b"]])
    assert slots[1] == slots[3]  # b, d share group 0 (b keeps its first group)
    assert slots[2] != slots[1] and slots[0] not in (slots[1], slots[2])
    assert sorted(set(slots.tolist())) == list(range(3))


def test_token_sharing_matches_groups_exactly(tiny_clip):
    classnames = ["cat", "dog", "car", "bus", "cup"]
    groups = {"coarse": [["cat", "dog"], ["car", "bus"]], "fine": [["car", "bus"]]}
    counts = {"shared": 3, "coarse": 2, "fine": 2, "class": 1}
    learner = HierarchicalPromptLearner(tiny_clip, classnames, groups, counts, "a photo of a {}.")
    ctx = learner.global_context()  # [C, M, W]
    assert ctx.shape == (5, 8, tiny_clip.token_width)
    shared, coarse, fine, own = ctx[:, :3], ctx[:, 3:5], ctx[:, 5:7], ctx[:, 7:]
    assert all(torch.equal(shared[0], shared[i]) for i in range(5))
    assert torch.equal(coarse[0], coarse[1]) and torch.equal(coarse[2], coarse[3])
    assert not torch.equal(coarse[0], coarse[2]) and not torch.equal(coarse[4], coarse[0])
    assert torch.equal(fine[2], fine[3])
    assert len({tuple(fine[i].flatten().tolist()) for i in (0, 1, 2, 4)}) == 4  # cat, dog, cup own fine tokens
    assert len({tuple(own[i].flatten().tolist()) for i in range(5)}) == 5
    vectors = learner.global_context.vectors
    # same parameters, not copies: one slot per group or ungrouped class
    assert vectors["shared"].shape[0] == 1
    assert vectors["coarse"].shape[0] == 3 and vectors["fine"].shape[0] == 4 and vectors["class"].shape[0] == 5
    # and the local set is independent of the global one
    assert learner.local_context.vectors["shared"] is not vectors["shared"]
    assert not torch.equal(learner.local_context(), ctx)


def test_special_cases_are_the_same_learner(tiny_clip):
    classnames = ["cat", "dog"]
    shared = HierarchicalPromptLearner(tiny_clip, classnames, {}, {"shared": 4, "coarse": 0, "fine": 0, "class": 0}, "{}")
    csc = HierarchicalPromptLearner(tiny_clip, classnames, {}, {"shared": 0, "coarse": 0, "fine": 0, "class": 4}, "{}")
    hand = HierarchicalPromptLearner(tiny_clip, classnames, {}, {"shared": 0, "coarse": 0, "fine": 0, "class": 0}, "a photo of a {}.")
    assert shared.global_context.vectors["shared"].shape[0] == 1
    assert csc.global_context.vectors["class"].shape[0] == 2
    assert not hand.learnable and len(list(hand.parameters())) == 0
    expected = tiny_clip.encode_text(tiny_clip.tokenize(["a photo of a cat.", "a photo of a dog."]))[0]
    assert torch.allclose(hand.class_embeddings()[0], expected, atol=1e-5)


def test_learned_context_changes_class_embeddings(tiny_clip):
    learner = HierarchicalPromptLearner(tiny_clip, ["cat"], {}, {"shared": 2, "coarse": 0, "fine": 0, "class": 0}, "{}")
    before = learner.class_embeddings()[0].detach().clone()
    with torch.no_grad():
        # not a constant shift: the layer norms would remove it (up to rounding)
        learner.global_context.vectors["shared"].add_(torch.linspace(-1, 1, tiny_clip.token_width))
    assert (before - learner.class_embeddings()[0]).abs().max() > 1e-2


def test_learned_prompts_end_with_the_label_and_hand_crafted_ones_with_the_readable_name(tiny_clip):
    classnames = ["mouse", "tv"]
    counts = {"shared": 2, "coarse": 0, "fine": 0, "class": 0}

    def suffix_of(texts, n_ctx):
        return tiny_clip.token_embeddings(tiny_clip.tokenize(texts))[:, 1 + n_ctx:]

    paper = HierarchicalPromptLearner(tiny_clip, classnames, {}, counts, "a photo of a {}.")
    assert torch.equal(paper.encoder.suffix, suffix_of(["X X mouse.", "X X tv."], 2))
    readable = HierarchicalPromptLearner(tiny_clip, classnames, {}, counts, "a photo of a {}.", learned_name="prompt")
    assert torch.equal(readable.encoder.suffix, suffix_of(["X X computer mouse.", "X X television."], 2))
    hand = HierarchicalPromptLearner(tiny_clip, classnames, {}, {k: 0 for k in counts}, "a photo of a {}.")
    assert torch.equal(hand.encoder.suffix, suffix_of(["a photo of a computer mouse.", "a photo of a television."], 0))
    with pytest.raises(ValueError, match="LEARNED_NAME='Y'"):
        HierarchicalPromptLearner(tiny_clip, classnames, {}, counts, "{}", learned_name="Y")


def test_the_start_token_joins_the_local_text_score_as_in_taidpt(tiny_clip):
    """TaI-DPT's text branch (Caption_distill_double.py, `if_test=False`): per-token features of
    the whole 77-position caption, normalised; padding (token id 0) pushed down by 10000, the
    start-of-text kept; softmax over positions at scale 50; Σ 4 · s · softmax. With
    TEXT_START_TOKEN the project's score times LOGIT_SCALE (4) is that number."""
    from hiprompt.config import get_cfg_default
    from hiprompt.model.method import PromptedCLIP

    hp = get_cfg_default().TRAINER.HIPROMPT
    hp.N_CTX_SHARED, hp.N_CTX_COARSE, hp.N_CTX_FINE, hp.N_CTX_CLASS = 4, 0, 0, 0
    hp.TEXT_START_TOKEN, hp.TAU_TEXT = True, 1 / 50
    classes = ["dog", "cat", "bus"]
    torch.manual_seed(0)
    model = PromptedCLIP(tiny_clip, classes, {"coarse": [], "fine": []}, hp)
    captions = ["a dog chases a cat.", "the bus."]
    tokens = tiny_clip.tokenize(captions)  # [B, 77]
    eot, per_token, mask = tiny_clip.encode_text(tokens, truncate=True)  # what the store holds: 1..eot
    with torch.no_grad():
        global_emb, local_emb = model.prompts.class_embeddings()
        _, ours = model.text_scores(eot, per_token[:, 1:], mask[:, 1:], (global_emb, local_emb))

        _, full, _ = tiny_clip.encode_text(tokens)  # [B, 77, D]
        image_features = F.normalize(full, dim=-1).permute(1, 0, 2)  # L x B x D
        text_features = F.normalize(local_emb, dim=-1)
        text_mask = (tokens == 0).long() * (-10000)  # B x L
        logits_neg = (image_features @ text_features.t()).permute(2, 1, 0) + text_mask[None]
        logits_neg = logits_neg.permute(2, 1, 0)  # L x B x cls
        prob = torch.softmax(logits_neg * 50, dim=0)
        expected = torch.sum(4.0 * logits_neg * prob, dim=0)  # B x cls
    torch.testing.assert_close(hp.LOGIT_SCALE * ours, expected, rtol=0, atol=1e-4)
    hp.TEXT_START_TOKEN = False  # without it the score differs
    torch.manual_seed(0)
    without = PromptedCLIP(tiny_clip, classes, {"coarse": [], "fine": []}, hp)
    with torch.no_grad():
        _, other = without.text_scores(eot, per_token[:, 1:], mask[:, 1:], (global_emb, local_emb))
    assert (other - ours).abs().max() > 1e-4


# ------------------------------------------------------------- temperatures away from 1
def test_local_aggregation_temperature_hand_computed_away_from_one():
    features = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # cosines 1 and 0 with the class
    classes = torch.tensor([[2.0, 0.0]])
    # softmax([1, 0] / 0.5) = [e^2, 1] / (e^2 + 1): the score is its weight on the cosine 1
    assert local_scores(features, classes, tau=0.5).item() == pytest.approx(math.e ** 2 / (math.e ** 2 + 1))
    # tau 4: softmax([0.25, 0]) -> e^0.25 / (e^0.25 + 1)
    assert local_scores(features, classes, tau=4.0).item() == pytest.approx(math.exp(0.25) / (math.exp(0.25) + 1))


@pytest.mark.parametrize("tau", [0.02, 0.3, 3.0])
def test_local_aggregation_equals_the_equation_at_several_temperatures(tau):
    import objective_reference as ref

    gen = torch.Generator().manual_seed(7)
    features, classes = torch.randn(3, 6, 5, generator=gen), torch.randn(4, 5, generator=gen)
    mask = torch.tensor([[True] * 6, [True, True, False, False, False, False], [False, True] * 3])
    got = local_scores(features, classes, tau, mask)
    want = ref.local_scores(features.numpy(), classes.numpy(), tau, mask.numpy())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    assert np.abs(want - ref.local_scores(features.numpy(), classes.numpy(), 1.0, mask.numpy())).max() > 1e-2


def test_order_loss_temperature_hand_computed_away_from_one():
    learned = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosines [[1, 0], [0, 1]]
    hand = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # cosines all 1: uniform rows
    p = math.e ** 2 / (math.e ** 2 + 1)  # softmax([1, 0] / 0.5)
    expected = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert order_loss(learned, hand, 0.5, "learned_to_hand").item() == pytest.approx(expected, rel=1e-6)
    assert order_loss(learned, hand, 1.0, "learned_to_hand").item() != pytest.approx(expected, rel=1e-2)


@pytest.mark.parametrize("temperature", [0.1, 0.7])
def test_order_loss_equals_the_equation_at_several_temperatures(temperature):
    import objective_reference as ref

    gen = torch.Generator().manual_seed(3)
    learned, hand = torch.randn(5, 8, generator=gen), torch.randn(5, 8, generator=gen)
    want = ref.order_loss(learned.numpy(), hand.numpy(), temperature)
    assert order_loss(learned, hand, temperature, "learned_to_hand").item() == pytest.approx(want, rel=1e-5)
    assert abs(want - ref.order_loss(learned.numpy(), hand.numpy(), 1.0)) > 1e-2 * want


def test_image_scores_fuse_global_and_dense_at_tau_image_and_lambda2(tiny_clip):
    """S = λ2 S^G + (1 - λ2) S^L over image positions at TAU_IMAGE (paper Eq. 16), λ2 0.65, τ 1/40."""
    import objective_reference as ref

    from hiprompt.config import get_cfg_default
    from hiprompt.model.method import PromptedCLIP

    hp = get_cfg_default().TRAINER.HIPROMPT
    assert (hp.LAMBDA_FUSE, hp.TAU_IMAGE) == (0.65, 0.025)
    torch.manual_seed(0)
    model = PromptedCLIP(tiny_clip, ["dog", "cat", "car"], {"coarse": [["dog", "cat"]], "fine": []}, hp)
    gen = torch.Generator().manual_seed(5)
    global_feats, dense = torch.randn(2, tiny_clip.embed_dim, generator=gen), torch.randn(2, 9, tiny_clip.embed_dim, generator=gen)
    gen_emb, loc_emb = torch.randn(3, tiny_clip.embed_dim, generator=gen), torch.randn(3, tiny_clip.embed_dim, generator=gen)
    got = model.image_scores(global_feats, dense, (gen_emb, loc_emb)).numpy()
    s_g = ref.global_scores(global_feats.numpy(), gen_emb.numpy())
    s_l = ref.local_scores(dense.numpy(), loc_emb.numpy(), 0.025)
    np.testing.assert_allclose(got, 0.65 * s_g + 0.35 * s_l, rtol=1e-5, atol=1e-6)
    assert np.abs(s_l - ref.local_scores(dense.numpy(), loc_emb.numpy(), 1.0)).max() > 1e-2
    assert np.abs(s_g - s_l).max() > 1e-2


# ------------------------------------------------------------- ranking loss edge cases
def test_ranking_loss_default_margin_is_the_papers_one():
    scores, labels = torch.tensor([[0.3, 0.1]]), torch.tensor([[1.0, 0.0]])
    assert ranking_loss(scores, labels).item() == pytest.approx(1 - 0.3 + 0.1)


def test_ranking_loss_counts_a_sample_with_a_single_pair():
    scores = torch.tensor([[0.2, 0.5], [0.9, 0.1]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # one pair each: 1 - 0.2 + 0.5 = 1.3 and 1 - 0.1 + 0.9 = 1.8; sum and mean agree at one pair
    for reduction in ("sum", "mean"):
        assert ranking_loss(scores, labels, 1.0, reduction).item() == pytest.approx((1.3 + 1.8) / 2)


def test_ranking_loss_without_any_pair_is_zero_with_a_zero_gradient():
    scores = torch.tensor([[0.2, 0.5], [0.9, 0.1]], requires_grad=True)
    loss = ranking_loss(scores, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(scores.grad, torch.zeros_like(scores))


def test_loss_choices_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match=r"^reduction='max': expected one of sum, mean$"):
        ranking_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), reduction="max")
    with pytest.raises(ValueError, match=r"^direction='both': expected one of learned_to_hand, hand_to_learned$"):
        order_loss(torch.eye(2), torch.eye(2), 0.1, direction="both")


def test_prompted_clip_builds_the_prompts_its_settings_name(tiny_clip):
    """TEMPLATE, CTX_INIT and CLASS_TOKEN_POSITION reach the prompts: the context started from
    "a photo of a" before the readable name, or after it (`front`), is the sentence open_clip
    encodes; all counts 0 give TEMPLATE's sentence. The model's state is the prompts' only."""
    from hiprompt.config import get_cfg_default
    from hiprompt.model.method import PromptedCLIP

    classes, no_groups = ["dog", "cat", "bus"], {"coarse": [], "fine": []}
    hp = get_cfg_default().TRAINER.HIPROMPT
    hp.N_CTX_SHARED, hp.N_CTX_COARSE, hp.N_CTX_FINE, hp.N_CTX_CLASS = 4, 0, 0, 0
    hp.CTX_INIT, hp.LEARNED_NAME, hp.TEXT_START_TOKEN = "a photo of a", "prompt", True
    for position, sentence in (("end", "a photo of a {}."), ("front", "{} a photo of a.")):
        hp.CLASS_TOKEN_POSITION = position
        model = PromptedCLIP(tiny_clip, classes, no_groups, hp)
        expected = tiny_clip.model.encode_text(tiny_clip.tokenize([sentence.format(c) for c in classes]))
        with torch.no_grad():
            for embeddings in model.prompts.class_embeddings():
                torch.testing.assert_close(embeddings, expected, rtol=0, atol=1e-5)
        assert set(model.state_dict()) == {f"prompts.{key}" for key in model.prompts.state_dict()}

    hp.N_CTX_SHARED, hp.CTX_INIT, hp.CLASS_TOKEN_POSITION = 0, "", "end"
    hp.TEMPLATE = "a drawing of the {}."
    model = PromptedCLIP(tiny_clip, classes, no_groups, hp)
    expected = tiny_clip.model.encode_text(tiny_clip.tokenize([hp.TEMPLATE.format(c) for c in classes]))
    with torch.no_grad():
        torch.testing.assert_close(model.prompts.class_embeddings()[0], expected, rtol=0, atol=1e-5)
