"""The training objectives written out in numpy (float64), from the paper's equations and
DualCoOp's code, for the tests to hold the library's torch code to. Nothing here imports
the library: inputs go in as arrays, numbers come out.

Equations (../shared/docs/METHOD.md §4, paper Eq. 8, 11-14):
- S^G_i = <T^G / |T^G|, G_i / |G_i|>
- S^L_i = Σ_j softmax_j(s_ij / τ) s_ij, s_ij = cosine of class i and real token j
- L_rank(S) = mean over samples with a positive and a negative of
  Σ_{i ∈ Y+, j ∈ Y-} max(0, m - scale·S_i + scale·S_j)
- D^k = row-softmax(cos(E_k, E_k) / t); L_order = mean over rows of KL(D^learned ‖ D^hand)
"""

import numpy as np


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def global_scores(features, classes):
    """[B, D], [C, D] -> [B, C]: one cosine per pair, by loops."""
    f, c = unit(features), unit(classes)
    return np.array([[float(f[b] @ c[i]) for i in range(len(c))] for b in range(len(f))])


def local_scores(tokens, classes, tau, mask=None):
    """[B, T, D], [C, D], mask [B, T] (True = real) -> [B, C], by loops over samples and classes."""
    tokens, classes = np.asarray(tokens, dtype=np.float64), unit(classes)
    out = np.zeros((len(tokens), len(classes)))
    for b in range(len(tokens)):
        real = unit(tokens[b] if mask is None else tokens[b][np.asarray(mask[b], dtype=bool)])  # [T', D]
        for i in range(len(classes)):
            s = real @ classes[i]  # [T']
            out[b, i] = float(np.sum(softmax(s / tau) * s))
    return out


def ranking_loss(scores, labels, margin, scale=1.0, reduction="sum"):
    per_sample = []
    for row, truth in zip(np.asarray(scores, dtype=np.float64), np.asarray(labels)):
        pos = [scale * row[i] for i in range(len(row)) if truth[i] == 1]
        neg = [scale * row[j] for j in range(len(row)) if truth[j] == 0]
        if pos and neg:
            total = sum(max(0.0, margin - p + n) for p in pos for n in neg)
            per_sample.append(total / (len(pos) * len(neg)) if reduction == "mean" else total)
    return float(np.mean(per_sample)) if per_sample else 0.0


def similarity_distribution(embeddings, temperature):
    """[C, D] -> [C, C] row distributions softmax(cos / t)."""
    e = unit(embeddings)
    sims = e @ e.T
    return np.stack([softmax(row / temperature) for row in sims])


def order_loss(learned, hand, temperature):
    """Mean over rows of KL(D_learned ‖ D_hand) = Σ_j P_j log(P_j / Q_j)."""
    p, q = similarity_distribution(learned, temperature), similarity_distribution(hand, temperature)
    return float(np.mean([np.sum(p[i] * np.log(p[i] / q[i])) for i in range(len(p))]))


def dualcoop_logits(features, positive, negative, spatial_scale, scale, mask=None):
    """DualCoOp's region aggregation: [B, P, D] -> [B, 2, C] (0 negative, 1 positive)."""
    features = np.asarray(features, dtype=np.float64)
    out = np.zeros((len(features), 2, len(positive)))
    for b in range(len(features)):
        f = unit(features[b] if mask is None else features[b][np.asarray(mask[b], dtype=bool)])
        for c in range(len(positive)):
            s_pos = spatial_scale * (f @ unit(positive[c]))
            s_neg = spatial_scale * (f @ unit(negative[c]))
            w = softmax(s_pos)
            out[b, 0, c], out[b, 1, c] = scale * np.sum(w * s_neg), scale * np.sum(w * s_pos)
    return out


def asymmetric_loss(logits, targets, gamma_neg, gamma_pos, clip, eps=1e-6):
    """DualCoOp's AsymmetricLoss on (neg, pos) logit pairs, summed over known entries."""
    total = 0.0
    for b in range(len(targets)):
        for c in range(len(targets[b])):
            y = targets[b][c]
            if y == -1:
                continue
            neg, pos = logits[b][0][c], logits[b][1][c]
            p_pos = 1.0 / (1.0 + np.exp(neg - pos))
            p_neg = min(1.0 - p_pos + clip, 1.0) if clip > 0 else 1.0 - p_pos
            if y == 1:
                total += -np.log(max(p_pos, eps)) * (1 - p_pos) ** gamma_pos
            else:
                total += -np.log(max(p_neg, eps)) * (1 - p_neg) ** gamma_neg
    return float(total)
