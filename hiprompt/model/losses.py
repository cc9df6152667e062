"""Training objectives (paper §4): ranking loss on each branch, order loss to the hand-crafted prompts."""

import torch
import torch.nn.functional as F

from hiprompt.choices import check_choice

RANK_REDUCTIONS = ("sum", "mean")
ORDER_DIRECTIONS = ("learned_to_hand", "hand_to_learned")


def ranking_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0,
                 reduction: str = "sum") -> torch.Tensor:
    """Pairwise hinge (Eq. 12): for each sample, max(0, m - S_pos + S_neg) over its
    positive/negative class pairs, summed (`sum`, the paper's and TaI-DPT's) or averaged
    (`mean`) over those pairs; then averaged over the samples that have both kinds.

    scores: [B, C]; labels: [B, C] with 1 = positive, 0 = negative.
    """
    check_choice(reduction, RANK_REDUCTIONS, "reduction")
    positive = labels > 0.5  # [B, C]
    negative = ~positive
    hinge = (margin - scores[:, :, None] + scores[:, None, :]).clamp(min=0)  # [B, Cpos, Cneg]
    pair_mask = positive[:, :, None] & negative[:, None, :]  # [B, C, C]
    pairs = pair_mask.sum(dim=(1, 2))  # [B]
    per_sample = (hinge * pair_mask).sum(dim=(1, 2))  # [B]
    if reduction == "mean":
        per_sample = per_sample / pairs.clamp(min=1)
    valid = pairs > 0
    if not valid.any():
        return scores.sum() * 0.0
    return per_sample[valid].mean()


def class_similarity_distribution(embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """Rows of the class-by-class cosine similarity matrix, softmaxed: [C, D] -> [C, C] (log-probabilities)."""
    normed = F.normalize(embeddings, dim=-1)
    return F.log_softmax(normed @ normed.t() / temperature, dim=-1)


def order_loss(learned: torch.Tensor, handcrafted: torch.Tensor, temperature: float,
               direction: str) -> torch.Tensor:
    """KL between the class-similarity distributions of learned and hand-crafted prompts,
    averaged over rows (classes).

    D_k is the row-softmaxed class similarity matrix of embeddings k ([C, D]); the
    hand-crafted distribution is the fixed reference. `learned_to_hand` is KL(D_learned ‖
    D_hand) (Eq. 13 read as KL(P ‖ Q)); `hand_to_learned` is KL(D_hand ‖ D_learned), what
    `F.kl_div(log D_learned, D_hand)` computes (the default of TRAINER.HIPROMPT.ORDER_DIRECTION).
    KL(P ‖ Q) = Σ_j P_j (log P_j - log Q_j).
    """
    check_choice(direction, ORDER_DIRECTIONS, "direction")
    log_learned = class_similarity_distribution(learned, temperature)  # [C, C]
    log_hand = class_similarity_distribution(handcrafted, temperature).detach()  # [C, C]
    log_p, log_q = (log_learned, log_hand) if direction == "learned_to_hand" else (log_hand, log_learned)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = 2.0,
                    gamma_pos: float = 1.0, clip: float = 0.05, eps: float = 1e-6) -> torch.Tensor:
    """DualCoOp's asymmetric loss on (negative, positive) logit pairs, summed over entries.

    logits: [B, 2, C], index 0 the negative prompt's logit, 1 the positive's; targets: [B, C]
    with 1 = positive, 0 = negative, -1 = unknown (a hidden partial label, left out).
    p = softmax over the pair; p_neg is shifted up by `clip` (capped at 1); the loss of an
    entry is -[y log p_pos + (1 - y) log p_neg] · (1 - p_t)^γ with γ = `gamma_pos` for a
    positive and `gamma_neg` for a negative and p_t the probability of the true side; the
    focusing weight carries no gradient (DualCoOp's `AsymmetricLoss`, its defaults γ- = 2,
    γ+ = 1, clip 0.05, eps 1e-6).
    """
    probs = torch.softmax(logits, dim=1)  # [B, 2, C]
    known = targets != -1  # [B, C]
    p_pos, p_neg, y = probs[:, 1][known], probs[:, 0][known], targets[known].float()  # [K] each
    if clip > 0:
        p_neg = (p_neg + clip).clamp(max=1)
    loss = y * torch.log(p_pos.clamp(min=eps)) + (1 - y) * torch.log(p_neg.clamp(min=eps))
    with torch.no_grad():
        p_true = p_pos * y + p_neg * (1 - y)
        weight = torch.pow(1 - p_true, gamma_pos * y + gamma_neg * (1 - y))
    return -(loss * weight).sum()
