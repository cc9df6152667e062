"""The method's model: hierarchical prompts on a frozen CLIP, trained on text, applied to images."""

import torch
from torch import nn

from hiprompt.model.losses import order_loss, ranking_loss
from hiprompt.model.prompt_learner import ClassPromptEncoder, HierarchicalPromptLearner, context_counts
from hiprompt.model.scoring import fuse, global_scores, local_scores


class PromptedCLIP(nn.Module):
    """Prompt learner + the fixed hand-crafted anchor; the CLIP itself stays outside the state.

    hp: the `TRAINER.HIPROMPT` config node.
    """

    def __init__(self, clip, classnames, groups: dict, hp):
        super().__init__()
        self.hp = hp
        self.prompts = HierarchicalPromptLearner(
            clip, classnames, groups, context_counts(hp), hp.TEMPLATE, hp.CTX_STD, hp.LOCAL_BRANCH,
            hp.LEARNED_NAME, hp.PROMPT_ENCODING, hp.CTX_INIT, hp.CLASS_TOKEN_POSITION,
        )
        with torch.no_grad():
            handcrafted = ClassPromptEncoder(clip, classnames, 0, hp.TEMPLATE)()  # [C, D]
        self.register_buffer("handcrafted", handcrafted, persistent=False)
        start = None
        if hp.TEXT_START_TOKEN:  # its feature is every sentence's (causal attention: it sees only itself)
            with torch.no_grad():
                start = clip.encode_text(clip.tokenize([""]))[1][0, 0].float()  # [D]
        self.register_buffer("start_feature", start, persistent=False)

    def text_scores(self, eot, tokens, mask, class_embeddings=None):
        """Global and local scores of descriptions: eot [B, D], tokens [B, T, D], mask [B, T] -> [B, C] each."""
        global_emb, local_emb = class_embeddings or self.prompts.class_embeddings()
        if self.start_feature is not None:  # the start-of-text token joins the local softmax (TaI-DPT)
            tokens = torch.cat([self.start_feature.to(tokens.dtype).expand(len(tokens), 1, -1), tokens], dim=1)
            mask = torch.cat([mask.new_ones(len(mask), 1), mask], dim=1)  # [B, 1 + T]
        return (global_scores(eot, global_emb),
                local_scores(tokens, local_emb, self.hp.TAU_TEXT, mask))

    def loss_terms(self, eot, tokens, mask, labels, class_embeddings=None) -> dict:
        """The objective's terms as tensors: rank_global, rank_local (with LOCAL_BRANCH) and
        order (with ORDER_LOSS, not yet weighted by λ1). class_embeddings: (global, local)
        when already computed (default: computed here)."""
        hp = self.hp
        global_emb, local_emb = class_embeddings or self.prompts.class_embeddings()
        score_g, score_l = self.text_scores(eot, tokens, mask, (global_emb, local_emb))
        terms = {"rank_global": ranking_loss(hp.LOGIT_SCALE * score_g, labels, hp.MARGIN, hp.RANK_REDUCTION)}
        if hp.LOCAL_BRANCH:
            terms["rank_local"] = ranking_loss(hp.LOGIT_SCALE * score_l, labels, hp.MARGIN, hp.RANK_REDUCTION)
        if hp.ORDER_LOSS:
            order = order_loss(global_emb, self.handcrafted, hp.ORDER_TEMP, hp.ORDER_DIRECTION)
            if hp.LOCAL_BRANCH:
                order = order + order_loss(local_emb, self.handcrafted, hp.ORDER_TEMP, hp.ORDER_DIRECTION)
            terms["order"] = order
        return terms

    def text_loss(self, eot, tokens, mask, labels, class_embeddings=None):
        """L = L_rank(S^G) + L_rank(S^L) + λ1 · L_order; returns (loss, parts for logging).
        class_embeddings: (global, local) when already computed (default: computed here)."""
        parts = self.loss_terms(eot, tokens, mask, labels, class_embeddings)
        loss = parts["rank_global"]
        if "rank_local" in parts:
            loss = loss + parts["rank_local"]
        if "order" in parts:
            loss = loss + self.hp.LAMBDA_ORDER * parts["order"]
        parts["loss"] = loss
        return loss, {k: v.item() for k, v in parts.items()}

    @torch.no_grad()
    def image_scores(self, global_feats, dense_feats, class_embeddings):
        """Fused scores of images: global [B, D], dense [B, P, D] -> [B, C]."""
        global_emb, local_emb = class_embeddings
        score_g = global_scores(global_feats, global_emb)
        score_l = local_scores(dense_feats, local_emb, self.hp.TAU_IMAGE)
        return fuse(score_g, score_l, self.hp.LAMBDA_FUSE)
