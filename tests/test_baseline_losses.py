"""Every trainer's objective by value, at the settings its shipped config builds, against
the equations written out in numpy (tests/objective_reference.py):

- HierarchicalCoOp: L = L_rank(4·S^G) + L_rank(4·S^L) + λ1 (KL(D^G ‖ D^H) + KL(D^L ‖ D^H)),
  λ1 = 0.2, order temperature 0.1, τ_text 0.02, margin 1 (paper Eq. 12-14; METHOD.md §4);
- CoOp: the ranking loss on the global scores only; TaI-DPT: on both branches, the
  start-of-text token among the local positions; neither has an order term;
- DualCoOp: LOSS_WEIGHT × the asymmetric loss of its region logits, hidden labels left out.

The inputs are small and uneven (padding with large values, a sample without negatives,
one without positives, learned global and local prompts that differ), and each test checks
that dropping any one term, weight or temperature moves the reference by far more than the
tolerance, so that the assertion on the library's value would catch that bug.
"""

import numpy as np
import objective_reference as ref
import pytest
import torch

import train
from hiprompt.baselines.dualcoop import DualCoOpModel
from hiprompt.model.method import PromptedCLIP

CLASSES = ["dog", "cat", "car", "bus", "cup"]
GROUPS = {"coarse": [["dog", "cat"], ["car", "bus"]], "fine": [["car", "bus"]]}
# rows: 1 positive; 2; 3; all positive (no negative: left out); none positive (left out)
LABELS = np.array([[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [1, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0],
                   [0, 0, 0, 0, 1]], dtype=np.float32)
LENGTHS = [3, 6, 1, 4, 2, 5]  # real tokens of each description; the rest is padding
REL = 1e-5


def cfg_of(trainer):
    args = train.parse_args(["--trainer", trainer, "--config-file", f"configs/trainers/{trainer}/tiny.yaml"])
    return train.setup_cfg(args)


def text_batch(dim, seed=0):
    """(eot [B, D], tokens [B, T, D], mask [B, T]) with padding that would change any score it entered."""
    gen = torch.Generator().manual_seed(seed)
    eot = torch.randn(len(LENGTHS), dim, generator=gen)
    tokens = torch.randn(len(LENGTHS), max(LENGTHS), dim, generator=gen)
    mask = torch.arange(max(LENGTHS))[None, :] < torch.tensor(LENGTHS)[:, None]
    tokens[~mask] = 50.0 * torch.randn(int((~mask).sum()), dim, generator=gen)
    return eot, tokens, mask


def spread_contexts(model, seed=1):
    """Move the learned contexts away from their near-zero start, so that the learned class
    similarities differ clearly from the hand-crafted ones (a sizeable order term)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.prompts.parameters():
            param.add_(torch.randn(param.shape, generator=gen))


def reference_parts(hp, eot, tokens, mask, labels, global_emb, local_emb, hand, start=None):
    """The objective's parts from the equations ({} keys as `text_loss` logs them)."""
    eot, tokens, mask = eot.numpy(), tokens.numpy(), mask.numpy()
    if start is not None:
        tokens = np.concatenate([np.broadcast_to(start, (len(tokens), 1, start.shape[-1])), tokens], axis=1)
        mask = np.concatenate([np.ones((len(mask), 1), dtype=bool), mask], axis=1)
    parts = {"rank_global": ref.ranking_loss(ref.global_scores(eot, global_emb), labels, hp.MARGIN, hp.LOGIT_SCALE)}
    total = parts["rank_global"]
    if hp.LOCAL_BRANCH:
        parts["rank_local"] = ref.ranking_loss(ref.local_scores(tokens, local_emb, hp.TAU_TEXT, mask), labels,
                                               hp.MARGIN, hp.LOGIT_SCALE)
        total += parts["rank_local"]
    if hp.ORDER_LOSS:  # ref.order_loss(p, q) is KL(D_p ‖ D_q)
        def kl(learned):
            pair = (hand, learned) if hp.ORDER_DIRECTION == "hand_to_learned" else (learned, hand)
            return ref.order_loss(*pair, hp.ORDER_TEMP)

        parts["order"] = kl(global_emb)
        if hp.LOCAL_BRANCH:
            parts["order"] += kl(local_emb)
        total += hp.LAMBDA_ORDER * parts["order"]
    parts["loss"] = total
    return parts


def far(a, b):
    """a and b differ by far more than the assertions' tolerance."""
    return abs(a - b) > 100 * REL * max(abs(a), abs(b), 1.0)


def test_hierarchical_objective_at_the_paper_settings_equals_the_equations(tiny_clip):
    hp = cfg_of("HierarchicalCoOp").TRAINER.HIPROMPT
    assert (hp.LAMBDA_ORDER, hp.ORDER_TEMP, hp.TAU_TEXT, hp.LOGIT_SCALE, hp.MARGIN) == (0.2, 0.1, 0.02, 4.0, 1.0)
    assert hp.LOCAL_BRANCH and hp.ORDER_LOSS and not hp.TEXT_START_TOKEN and hp.RANK_REDUCTION == "sum"
    assert hp.ORDER_DIRECTION == "hand_to_learned"
    torch.manual_seed(0)
    model = PromptedCLIP(tiny_clip, CLASSES, GROUPS, hp)
    spread_contexts(model)
    # the anchor: the hand-crafted prompts as open_clip encodes them
    hand_texts = [hp.TEMPLATE.format(c) for c in CLASSES]
    expected_hand = tiny_clip.model.encode_text(tiny_clip.tokenize(hand_texts))
    torch.testing.assert_close(model.handcrafted, expected_hand, rtol=0, atol=1e-5)

    eot, tokens, mask = text_batch(tiny_clip.embed_dim)
    with torch.no_grad():
        global_emb, local_emb = (e.numpy() for e in model.prompts.class_embeddings())
    hand = model.handcrafted.numpy()
    loss, parts = model.text_loss(eot, tokens, mask, torch.from_numpy(LABELS))
    want = reference_parts(hp, eot, tokens, mask, LABELS, global_emb, local_emb, hand)
    assert set(parts) == set(want)
    for name in want:
        assert parts[name] == pytest.approx(want[name], rel=REL), name
    assert loss.item() == pytest.approx(want["loss"], rel=REL)

    # the inputs make every term, weight and temperature count
    order_g = ref.order_loss(hand, global_emb, hp.ORDER_TEMP)  # KL(D_hand ‖ D_learned)
    order_l = want["order"] - order_g
    assert far(want["loss"], want["loss"] - hp.LAMBDA_ORDER * want["order"])  # λ1 dropped (term gone)
    assert far(want["loss"], want["loss"] + (1 - hp.LAMBDA_ORDER) * want["order"])  # λ1 dropped (weight 1)
    assert far(want["order"], order_g) and far(want["order"], 2 * order_g)  # local order term dropped / = global
    assert far(order_l, ref.order_loss(hand, local_emb, 1.0))  # order temperature dropped
    assert far(want["order"], ref.order_loss(global_emb, hand, hp.ORDER_TEMP)
               + ref.order_loss(local_emb, hand, hp.ORDER_TEMP))  # the other direction
    assert far(want["rank_local"], ref.ranking_loss(
        ref.local_scores(tokens.numpy(), local_emb, 1.0, mask.numpy()), LABELS, 1.0, 4.0))  # τ_text dropped
    assert far(want["rank_local"], ref.ranking_loss(
        ref.local_scores(tokens.numpy(), local_emb, hp.TAU_TEXT), LABELS, 1.0, 4.0))  # padding not masked
    assert far(want["rank_global"], ref.ranking_loss(ref.global_scores(eot.numpy(), global_emb), LABELS, 1.0))
    assert far(want["rank_global"], ref.ranking_loss(ref.global_scores(eot.numpy(), local_emb), LABELS, 1.0, 4.0))
    assert far(want["rank_global"], ref.ranking_loss(ref.global_scores(eot.numpy(), global_emb), LABELS, 0.0, 4.0))
    assert far(want["rank_global"], ref.ranking_loss(ref.global_scores(eot.numpy(), global_emb), LABELS, 1.0, 4.0,
                                                     reduction="mean"))


def test_objective_takes_the_embeddings_given_and_the_settings_away_from_their_defaults(tiny_clip):
    """`text_loss` with class embeddings passed in (the trainer passes them, computed under its
    autocast) scores with those, not the prompts' own; RANK_REDUCTION mean and ORDER_DIRECTION
    learned_to_hand (KL(D_learned ‖ D_hand)) reach both branches' terms."""
    cfg = cfg_of("HierarchicalCoOp")
    cfg.defrost()
    hp = cfg.TRAINER.HIPROMPT
    hp.RANK_REDUCTION, hp.ORDER_DIRECTION = "mean", "learned_to_hand"
    torch.manual_seed(0)
    model = PromptedCLIP(tiny_clip, CLASSES, GROUPS, hp)
    gen = torch.Generator().manual_seed(3)
    given = [torch.randn(len(CLASSES), tiny_clip.embed_dim, generator=gen) for _ in range(2)]  # not the prompts'
    eot, tokens, mask = text_batch(tiny_clip.embed_dim)
    hand = model.handcrafted.numpy()
    global_emb, local_emb = (e.numpy() for e in given)
    with torch.no_grad():
        loss, parts = model.text_loss(eot, tokens, mask, torch.from_numpy(LABELS), tuple(given))
        score_g, score_l = model.text_scores(eot, tokens, mask, tuple(given))
    np.testing.assert_allclose(score_g.numpy(), ref.global_scores(eot.numpy(), global_emb), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(score_l.numpy(), ref.local_scores(tokens.numpy(), local_emb, hp.TAU_TEXT, mask.numpy()),
                               rtol=1e-5, atol=1e-6)
    rank = {name: ref.ranking_loss(scores, LABELS, hp.MARGIN, hp.LOGIT_SCALE, reduction="mean")
            for name, scores in (("rank_global", ref.global_scores(eot.numpy(), global_emb)),
                                 ("rank_local", ref.local_scores(tokens.numpy(), local_emb, hp.TAU_TEXT, mask.numpy())))}
    order = ref.order_loss(global_emb, hand, hp.ORDER_TEMP) + ref.order_loss(local_emb, hand, hp.ORDER_TEMP)
    for name, value in {**rank, "order": order}.items():
        assert parts[name] == pytest.approx(value, rel=REL), name
    assert loss.item() == pytest.approx(rank["rank_global"] + rank["rank_local"] + hp.LAMBDA_ORDER * order, rel=REL)
    # the defaults would give other numbers on these inputs
    assert far(rank["rank_global"], ref.ranking_loss(ref.global_scores(eot.numpy(), global_emb), LABELS, hp.MARGIN,
                                                     hp.LOGIT_SCALE))
    assert far(order, ref.order_loss(hand, global_emb, hp.ORDER_TEMP) + ref.order_loss(hand, local_emb, hp.ORDER_TEMP))


def test_hierarchical_objective_normalises_along_the_feature_dimension(tiny_clip):
    """A normalisation over the batch or class dimension instead of the feature one gives
    another objective on these inputs (and the library gives the feature one)."""
    hp = cfg_of("HierarchicalCoOp").TRAINER.HIPROMPT
    torch.manual_seed(0)
    model = PromptedCLIP(tiny_clip, CLASSES, GROUPS, hp)
    spread_contexts(model)
    eot, tokens, mask = text_batch(tiny_clip.embed_dim, seed=3)
    with torch.no_grad():
        global_emb, local_emb = (e.numpy().astype(np.float64) for e in model.prompts.class_embeddings())
    loss, parts = model.text_loss(eot, tokens, mask, torch.from_numpy(LABELS))
    g = eot.numpy().astype(np.float64)
    wrong_global = (g / np.linalg.norm(g, axis=0, keepdims=True)) @ ref.unit(global_emb).T
    assert far(parts["rank_global"], ref.ranking_loss(wrong_global, LABELS, 1.0, 4.0))
    wrong_hand = model.handcrafted.numpy() / np.linalg.norm(model.handcrafted.numpy(), axis=0, keepdims=True)
    wrong_learned = global_emb / np.linalg.norm(global_emb, axis=0, keepdims=True)
    sims = wrong_learned @ wrong_learned.T  # not cosines: normalised per feature, not per class
    hand_sims = wrong_hand @ wrong_hand.T
    rows_p = np.stack([ref.softmax(r / hp.ORDER_TEMP) for r in sims])
    rows_q = np.stack([ref.softmax(r / hp.ORDER_TEMP) for r in hand_sims])
    wrong_order_g = float(np.mean(np.sum(rows_p * np.log(rows_p / rows_q), axis=1)))
    assert far(ref.order_loss(global_emb, model.handcrafted.numpy(), hp.ORDER_TEMP), wrong_order_g)
    want = reference_parts(hp, eot, tokens, mask, LABELS, global_emb, local_emb, model.handcrafted.numpy())
    assert loss.item() == pytest.approx(want["loss"], rel=REL)


@pytest.mark.parametrize("trainer", ["CoOp", "TaIDPT"])
def test_coop_and_taidpt_objectives_are_the_ranking_loss_on_their_branches(tiny_clip, trainer):
    hp = cfg_of(trainer).TRAINER.HIPROMPT
    local = trainer == "TaIDPT"
    assert (hp.LOGIT_SCALE, hp.MARGIN, hp.TAU_TEXT, hp.RANK_REDUCTION) == (4.0, 1.0, 0.02, "sum")
    assert not hp.ORDER_LOSS and hp.LOCAL_BRANCH == local and hp.TEXT_START_TOKEN == local
    torch.manual_seed(0)
    model = PromptedCLIP(tiny_clip, CLASSES, {"coarse": [], "fine": []}, hp)
    assert set(model.prompts.global_context.vectors) == {"shared"}
    spread_contexts(model)
    eot, tokens, mask = text_batch(tiny_clip.embed_dim, seed=1)
    with torch.no_grad():
        global_emb, local_emb = (e.numpy() for e in model.prompts.class_embeddings())
    start = None
    if local:
        # TaI-DPT keeps the start-of-text token: its feature, the first position of the empty text
        with torch.no_grad():
            _, per_token, _ = tiny_clip.encode_text(tiny_clip.tokenize([""]))
        start = per_token[0, 0].numpy()
        torch.testing.assert_close(model.start_feature, per_token[0, 0])
    loss, parts = model.text_loss(eot, tokens, mask, torch.from_numpy(LABELS))
    want = reference_parts(hp, eot, tokens, mask, LABELS, global_emb, local_emb, None, start)
    assert set(parts) == set(want) and "order" not in parts
    for name in want:
        assert parts[name] == pytest.approx(want[name], rel=REL), name
    assert loss.item() == pytest.approx(want["loss"], rel=REL)
    if local:  # the start token and the local branch each count here
        without_start = reference_parts(hp, eot, tokens, mask, LABELS, global_emb, local_emb, None)
        assert far(want["rank_local"], without_start["rank_local"])
        assert far(want["loss"], want["rank_global"])


def test_dualcoop_objective_is_the_weighted_asymmetric_loss_of_its_region_logits(tiny_clip):
    dc = cfg_of("DualCoOp").TRAINER.DUALCOOP
    # DualCoOp's published settings; LOSS_WEIGHT 0.03 is its README's for half the labels
    assert (dc.SPATIAL_SCALE, dc.SCALE, dc.GAMMA_NEG, dc.GAMMA_POS, dc.CLIP, dc.LOSS_WEIGHT) == (
        20.0, 5.0, 2.0, 1.0, 0.05, 0.03)
    torch.manual_seed(0)
    model = DualCoOpModel(tiny_clip, CLASSES, dc)
    spread_contexts(model, seed=2)
    _, features, mask = text_batch(tiny_clip.embed_dim, seed=2)
    targets = torch.from_numpy(LABELS.copy())
    targets[1, 3] = targets[2, 0] = targets[5, 1] = -1  # hidden labels
    with torch.no_grad():
        positive, negative = (e.numpy() for e in model.prompts.class_embeddings())
    loss, parts = model.loss(features, targets, mask)
    logits = ref.dualcoop_logits(features.numpy(), positive, negative, dc.SPATIAL_SCALE, dc.SCALE, mask.numpy())
    t = targets.long().tolist()
    expected = dc.LOSS_WEIGHT * ref.asymmetric_loss(logits, t, dc.GAMMA_NEG, dc.GAMMA_POS, dc.CLIP)
    assert loss.item() == pytest.approx(expected, rel=REL) and parts["loss"] == pytest.approx(expected, rel=REL)
    # every setting counts on these inputs
    unweighted = ref.asymmetric_loss(logits, t, dc.GAMMA_NEG, dc.GAMMA_POS, dc.CLIP)
    assert far(expected, unweighted)
    assert far(unweighted, ref.asymmetric_loss(logits, t, 0.0, dc.GAMMA_POS, dc.CLIP))
    assert far(unweighted, ref.asymmetric_loss(logits, t, dc.GAMMA_NEG, 0.0, dc.CLIP))
    assert far(unweighted, ref.asymmetric_loss(logits, t, dc.GAMMA_NEG, dc.GAMMA_POS, 0.0))
    known_all = [[0 if y == -1 else y for y in row] for row in t]
    assert far(unweighted, ref.asymmetric_loss(logits, known_all, dc.GAMMA_NEG, dc.GAMMA_POS, dc.CLIP))
    unmasked = ref.dualcoop_logits(features.numpy(), positive, negative, dc.SPATIAL_SCALE, dc.SCALE)
    assert far(unweighted, ref.asymmetric_loss(unmasked, t, dc.GAMMA_NEG, dc.GAMMA_POS, dc.CLIP))
    unscaled = ref.dualcoop_logits(features.numpy(), positive, negative, 1.0, dc.SCALE, mask.numpy())
    assert far(unweighted, ref.asymmetric_loss(unscaled, t, dc.GAMMA_NEG, dc.GAMMA_POS, dc.CLIP))
