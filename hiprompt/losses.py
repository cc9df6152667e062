"""Training objectives (paper §4): ranking loss on each branch, order loss to the hand-crafted prompts."""

import torch
import torch.nn.functional as F


RANK_REDUCTIONS = ("sum", "mean")
ORDER_DIRECTIONS = ("learned_to_hand", "hand_to_learned")


def ranking_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0,
                 reduction: str = "sum") -> torch.Tensor:
    """Pairwise hinge (Eq. 12): for each sample, max(0, m - S_pos + S_neg) over its
    positive/negative class pairs, summed (`sum`, the paper's and TaI-DPT's) or averaged
    (`mean`) over those pairs; then averaged over the samples that have both kinds.

    scores: [B, C]; labels: [B, C] with 1 = positive, 0 = negative.
    """
    if reduction not in RANK_REDUCTIONS:
        raise ValueError(f"ranking-loss reduction {reduction!r}: expected one of {RANK_REDUCTIONS}")
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
               direction: str = "learned_to_hand") -> torch.Tensor:
    """KL between the class-similarity distributions of learned and hand-crafted prompts,
    averaged over rows (classes).

    D_k is the row-softmaxed class similarity matrix of embeddings k ([C, D]); the
    hand-crafted distribution is the fixed reference. `learned_to_hand` is KL(D_learned ‖
    D_hand) as the paper's Eq. 13 is written; `hand_to_learned` is KL(D_hand ‖ D_learned),
    what `F.kl_div(log D_learned, D_hand)` computes. KL(P ‖ Q) = Σ_j P_j (log P_j - log Q_j).
    """
    if direction not in ORDER_DIRECTIONS:
        raise ValueError(f"order-loss direction {direction!r}: expected one of {ORDER_DIRECTIONS}")
    log_learned = class_similarity_distribution(learned, temperature)  # [C, C]
    log_hand = class_similarity_distribution(handcrafted, temperature).detach()  # [C, C]
    log_p, log_q = (log_learned, log_hand) if direction == "learned_to_hand" else (log_hand, log_learned)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
