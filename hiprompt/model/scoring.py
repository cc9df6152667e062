"""Class scores from global and local features (paper Eq. 8, 11, 16)."""

import torch
import torch.nn.functional as F


def global_scores(features: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each sample to each class: [..., D] x [C, D] -> [..., C] (any
    leading dimensions, e.g. [B, D] or [B, T, D])."""
    return F.normalize(features, dim=-1) @ F.normalize(class_embeddings, dim=-1).t()


def local_scores(features: torch.Tensor, class_embeddings: torch.Tensor, tau: float,
                 mask: torch.Tensor = None) -> torch.Tensor:
    """Softmax-weighted aggregation over positions of each sample's local features.

    features: [B, T, D] (description tokens or image positions); class_embeddings: [C, D];
    mask: [B, T] True where a position is real (padding excluded). Returns [B, C] with
    S_i = Σ_j softmax_j(s_ij / tau) · s_ij and s_ij the cosine of class i and position j.
    """
    sims = torch.einsum("btd,cd->bct", F.normalize(features, dim=-1),
                        F.normalize(class_embeddings, dim=-1))  # [B, C, T]
    logits = sims / tau
    if mask is not None:
        logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
    weights = torch.softmax(logits, dim=-1)  # [B, C, T]
    return (weights * sims).sum(dim=-1)


def fuse(global_score: torch.Tensor, local_score: torch.Tensor, weight_global: float) -> torch.Tensor:
    """S = λ2 · S^G + (1 − λ2) · S^L."""
    return weight_global * global_score + (1.0 - weight_global) * local_score
