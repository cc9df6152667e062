"""What a config builds: the warm-up schedule against Dassl's, worked out by hand."""

import math

import pytest
import torch

from hiprompt.config import get_cfg_default
from hiprompt.training.build import build_optimizer, build_scheduler


def lrs_per_epoch(optim_cfg, epochs):
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], optim_cfg)
    scheduler = build_scheduler(optimizer, optim_cfg)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()  # once per epoch, as the runtime does
    return lrs


def test_constant_warmup_then_cosine_is_dassls_schedule():
    """Dassl's ConstantWarmupScheduler around CosineAnnealingLR(T = MAX_EPOCH), recounting:
    epoch 0 runs at the constant lr; from epoch 1 the cosine starts over from its own epoch 0,
    so epoch e >= 1 runs at LR (1 + cos(pi (e - 1) / T)) / 2 (TaI-DPT's and DualCoOp's runs:
    1 epoch at 1e-5)."""
    optim = get_cfg_default().OPTIM
    optim.LR, optim.MAX_EPOCH, optim.LR_SCHEDULER = 0.002, 5, "cosine"
    optim.WARMUP_EPOCH, optim.WARMUP_TYPE, optim.WARMUP_CONS_LR = 1, "constant", 1e-5
    expected = [1e-5] + [0.002 * (1 + math.cos(math.pi * k / 5)) / 2 for k in range(4)]
    assert lrs_per_epoch(optim, 5) == pytest.approx(expected, rel=1e-12)


def test_linear_warmup_then_multi_step():
    """Dassl's LinearWarmupScheduler: WARMUP_MIN_LR at epoch 0, LR * e / W for 0 < e < W; then
    the multi-step schedule from its own epoch 0 (milestones 2 and 3 of it: epochs 4 and 5)."""
    optim = get_cfg_default().OPTIM
    optim.LR, optim.LR_SCHEDULER, optim.STEPSIZE, optim.GAMMA = 0.1, "multi_step", (2, 3), 0.5
    optim.WARMUP_EPOCH, optim.WARMUP_TYPE, optim.WARMUP_MIN_LR = 2, "linear", 1e-4
    expected = [1e-4, 0.1 * 1 / 2, 0.1, 0.1, 0.05, 0.025, 0.025]
    assert lrs_per_epoch(optim, 7) == pytest.approx(expected, rel=1e-12)


def test_no_warmup_keeps_the_plain_schedules():
    optim = get_cfg_default().OPTIM
    optim.LR, optim.MAX_EPOCH, optim.LR_SCHEDULER = 0.002, 4, "cosine"
    assert type(build_scheduler(build_optimizer([torch.nn.Parameter(torch.zeros(1))], optim), optim)).__name__ \
        == "CosineAnnealingLR"
    assert lrs_per_epoch(optim, 4) == pytest.approx([0.002 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)])
