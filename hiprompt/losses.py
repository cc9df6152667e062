"""Training objectives (paper §4): ranking loss on each branch, order loss to the hand-crafted prompts."""

import torch
import torch.nn.functional as F


def ranking_loss(scores: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Pairwise hinge: for each sample, max(0, m - S_pos + S_neg) over its positive/negative
    class pairs, averaged over those pairs, then over the samples that have both kinds.

    scores: [B, C]; labels: [B, C] with 1 = positive, 0 = negative.
    """
    positive = labels > 0.5  # [B, C]
    negative = ~positive
    hinge = (margin - scores[:, :, None] + scores[:, None, :]).clamp(min=0)  # [B, Cpos, Cneg]
    pair_mask = positive[:, :, None] & negative[:, None, :]  # [B, C, C]
    pairs = pair_mask.sum(dim=(1, 2))  # [B]
    per_sample = (hinge * pair_mask).sum(dim=(1, 2)) / pairs.clamp(min=1)
    valid = pairs > 0
    if not valid.any():
        return scores.sum() * 0.0
    return per_sample[valid].mean()


def class_similarity_distribution(embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """Rows of the class-by-class cosine similarity matrix, softmaxed: [C, D] -> [C, C] (log-probabilities)."""
    normed = F.normalize(embeddings, dim=-1)
    return F.log_softmax(normed @ normed.t() / temperature, dim=-1)


def order_loss(learned: torch.Tensor, handcrafted: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(D_learned ‖ D_hand), averaged over rows (classes).

    D_k is the row-softmaxed class similarity matrix of embeddings k ([C, D]); the
    hand-crafted distribution is the fixed reference. Direction as written in the paper's
    Eq. 13: KL(P ‖ Q) = Σ_j P_j (log P_j - log Q_j) with P from the learned prompts.
    """
    log_p = class_similarity_distribution(learned, temperature)  # [C, C]
    log_q = class_similarity_distribution(handcrafted, temperature).detach()  # [C, C]
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
