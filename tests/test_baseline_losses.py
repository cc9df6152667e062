"""CoOp's and TaI-DPT's objectives as their configs build them: the ranking loss (TaI-DPT's
`ranking_loss`, written out here) on the global scores, and for TaI-DPT on the local ones too;
no order loss."""

import pytest
import torch

import train
from hiprompt.model.method import PromptedCLIP

CLASSES = ["dog", "cat", "car", "bus"]


def hp_of(trainer):
    args = train.parse_args(["--trainer", trainer, "--config-file", f"configs/trainers/{trainer}/tiny.yaml"])
    return train.setup_cfg(args).TRAINER.HIPROMPT


def taidpt_ranking_loss(scores, labels, scale=4.0, margin=1.0):
    """TaI-DPT's trainers/utils.py ranking_loss: Σ over (positive i, negative j) of
    max(0, margin - scale·s_i + scale·s_j), averaged over the batch."""
    total = 0.0
    for row, truth in zip(scores.tolist(), labels.tolist()):
        total += sum(max(0.0, margin - scale * row[i] + scale * row[j])
                     for i in range(len(row)) if truth[i] == 1 for j in range(len(row)) if truth[j] == 0)
    return total / len(scores)


@pytest.mark.parametrize("trainer, local", [("CoOp", False), ("TaIDPT", True)])
def test_objective_is_the_ranking_loss_on_the_trainers_branches(tiny_clip, trainer, local):
    hp = hp_of(trainer)
    model = PromptedCLIP(tiny_clip, CLASSES, {"coarse": [], "fine": []}, hp)
    assert set(model.prompts.global_context.vectors) == {"shared"}
    assert (model.prompts.local_context is not None) == local
    gen = torch.Generator().manual_seed(0)
    eot, tokens = torch.randn(5, 64, generator=gen), torch.randn(5, 7, 64, generator=gen)
    mask = torch.ones(5, 7, dtype=torch.bool)
    labels = torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]]).float()
    loss, parts = model.text_loss(eot, tokens, mask, labels)
    with torch.no_grad():
        score_g, score_l = model.text_scores(eot, tokens, mask)
    expected = taidpt_ranking_loss(score_g, labels) + (taidpt_ranking_loss(score_l, labels) if local else 0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert "order" not in parts and ("rank_local" in parts) == local
