"""DualCoOp (Sun et al., NeurIPS 2022) on the project's frozen CLIP: a positive and a negative
prompt per class, class-specific region aggregation, the asymmetric loss (hiprompt.model.losses).

A class has two prompts `[SOT] t_1 … t_M <class name> . [EOT]`, one with positive context,
one with negative; contexts are shared by all classes or class-specific (CSC). Both are made
by the prompt learner's own parts (`HierarchicalContext` for the vectors, `ClassPromptEncoder`
for the frozen text encoder). Scores of an image (or a description) come from its local
features (image positions, description tokens): with s^+_{c,j}, s^-_{c,j} the cosines of
position j to class c's positive and negative prompt,

    w_{c,j} = softmax_j(SPATIAL_SCALE · s^+_{c,j})
    logit^±_c = SCALE · SPATIAL_SCALE · Σ_j w_{c,j} s^±_{c,j}

(DualCoOp's `20 * conv1d`, softmax over the positive half, `5 * sum`: SPATIAL_SCALE 20,
SCALE 5), and the probability of class c is softmax(logit^-_c, logit^+_c)[+].
"""

import torch
import torch.nn.functional as F
from torch import nn

from hiprompt.model.losses import asymmetric_loss
from hiprompt.model.prompt_learner import ClassPromptEncoder, HierarchicalContext

TRAIN_DATA = ("images", "text")  # TRAINER.DUALCOOP.TRAIN_DATA: partially labelled images (as published), or text


def context_slots(num_classes: int) -> dict:
    """Slots of the two sharing kinds DualCoOp uses: one shared slot, one slot per class."""
    return {"shared": torch.zeros(num_classes, dtype=torch.long), "class": torch.arange(num_classes)}


class DualPromptLearner(nn.Module):
    """Positive and negative context vectors ([C, M, W] each) through one frozen encoder path."""

    learnable = True  # at least one context token (as the hierarchical learner's `learnable`)

    def __init__(self, clip, classnames, n_ctx: int, csc: bool, std: float = 0.02,
                 learned_name: str = "label"):
        super().__init__()
        if n_ctx < 1:
            raise ValueError(f"TRAINER.DUALCOOP.N_CTX={n_ctx}: DualCoOp needs at least one context token")
        counts = {"shared": 0 if csc else n_ctx, "coarse": 0, "fine": 0, "class": n_ctx if csc else 0}
        slots = context_slots(len(classnames))
        self.positive = HierarchicalContext(counts, slots, clip.token_width, std)
        self.negative = HierarchicalContext(counts, slots, clip.token_width, std)
        # the template is only used with no context tokens, which DualCoOp never has
        self.encoder = ClassPromptEncoder(clip, classnames, n_ctx, "{}", learned_name)

    def class_embeddings(self):
        """(positive [C, D], negative [C, D])."""
        return self.encoder(self.positive()), self.encoder(self.negative())


def region_logits(features: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                  spatial_scale: float = 20.0, scale: float = 5.0, mask: torch.Tensor = None) -> torch.Tensor:
    """Class-specific region aggregation: features [B, P, D] (mask [B, P], True = real) and
    prompt embeddings [C, D] each -> logits [B, 2, C] (index 0 negative, 1 positive)."""
    feats = F.normalize(features, dim=-1)
    sim_pos = spatial_scale * torch.einsum("bpd,cd->bcp", feats, F.normalize(positive, dim=-1))  # [B, C, P]
    sim_neg = spatial_scale * torch.einsum("bpd,cd->bcp", feats, F.normalize(negative, dim=-1))  # [B, C, P]
    weight_logits = sim_pos if mask is None else sim_pos.masked_fill(~mask[:, None, :], float("-inf"))
    weights = torch.softmax(weight_logits, dim=-1)  # [B, C, P]
    return scale * torch.stack([(sim_neg * weights).sum(-1), (sim_pos * weights).sum(-1)], dim=1)


def positive_margin(logits: torch.Tensor) -> torch.Tensor:
    """logit^+ - logit^-: [B, 2, C] -> [B, C]; its sigmoid is DualCoOp's probability, and it ranks
    the same without the probability's saturation (scores near 1 tie in floating point)."""
    return logits[:, 1] - logits[:, 0]


class DualCoOpModel(nn.Module):
    """The learner plus DualCoOp's scoring and loss; the CLIP itself stays outside the state.

    dc: the `TRAINER.DUALCOOP` config node.
    """

    def __init__(self, clip, classnames, dc, learned_name: str = "label"):
        super().__init__()
        self.dc = dc
        self.prompts = DualPromptLearner(clip, classnames, dc.N_CTX, dc.CSC, dc.CTX_STD, learned_name)

    def logits(self, features, embeddings, mask=None):
        positive, negative = embeddings
        return region_logits(features, positive, negative, self.dc.SPATIAL_SCALE, self.dc.SCALE, mask)

    def loss(self, features, targets, mask=None):
        """Weighted asymmetric loss of local features [B, P, D] against targets [B, C] (-1 = hidden)."""
        dc = self.dc
        logits = self.logits(features, self.prompts.class_embeddings(), mask)
        loss = dc.LOSS_WEIGHT * asymmetric_loss(logits, targets, dc.GAMMA_NEG, dc.GAMMA_POS, dc.CLIP)
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def image_scores(self, global_feats, dense_feats, embeddings):
        """[B, C] scores of images from their dense features [B, P, D] (the global ones are not
        used): the positive margin (see `positive_margin`)."""
        return positive_margin(self.logits(dense_feats, embeddings))
