"""What a config builds: the frozen backbone (MODEL.BACKBONE), the test transform (INPUT.*),
the optimiser and its schedule (OPTIM.*). The one place each is made from a config; the
choice lists here are the ones `hiprompt.config` validates against."""

import bisect
import math

import torch

from hiprompt.clip import ClipBackbone, build_clip
from hiprompt.data.transforms import TestTransform

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}  # OPTIM.NAME
LR_SCHEDULERS = ("multi_step", "cosine", "constant")  # OPTIM.LR_SCHEDULER, stepped once per epoch
WARMUP_TYPES = ("constant", "linear")  # OPTIM.WARMUP_TYPE (Dassl's)


def build_backbone(cfg) -> ClipBackbone:
    backbone = cfg.MODEL.BACKBONE
    return build_clip(backbone.NAME, backbone.WEIGHTS, activation=backbone.ACTIVATION,
                      dense_pos_embed=backbone.DENSE_POS_EMBED, global_pos_embed=backbone.GLOBAL_POS_EMBED,
                      dense_mean_token=backbone.DENSE_MEAN_TOKEN)


def build_test_transform(cfg) -> TestTransform:
    return TestTransform(size=tuple(cfg.INPUT.SIZE), mode=cfg.INPUT.TEST_RESIZE, mean=tuple(cfg.INPUT.PIXEL_MEAN),
                         std=tuple(cfg.INPUT.PIXEL_STD), interpolation=cfg.INPUT.INTERPOLATION)


def build_optimizer(params, optim):
    """OPTIM.NAME's optimiser (validated by hiprompt.config)."""
    if optim.NAME == "sgd":
        return torch.optim.SGD(params, lr=optim.LR, momentum=optim.MOMENTUM, weight_decay=optim.WEIGHT_DECAY)
    return OPTIMIZERS[optim.NAME](params, lr=optim.LR, weight_decay=optim.WEIGHT_DECAY)


def build_scheduler(optimizer, optim):
    """OPTIM.LR_SCHEDULER's schedule, stepped once per epoch; after OPTIM.WARMUP_EPOCH
    warm-up epochs when that is above 0."""
    if optim.WARMUP_EPOCH > 0:
        return _warmup_then_schedule(optimizer, optim)
    if optim.LR_SCHEDULER == "multi_step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(optim.STEPSIZE), optim.GAMMA)
    if optim.LR_SCHEDULER == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, optim.MAX_EPOCH)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _warmup_then_schedule(optimizer, optim):
    """Dassl's warm-up schedulers as one closed form (its ConstantWarmupScheduler and
    LinearWarmupScheduler around its cosine / multi-step ones): the lr of epoch e (from 0) is
    WARMUP_CONS_LR (constant), or WARMUP_MIN_LR at e = 0 and LR · e / W after (linear), while
    e < W; then the schedule's at epoch e - W (Dassl's default, WARMUP_RECOUNT True)."""
    warmup, base = optim.WARMUP_EPOCH, optim.LR

    def schedule(t: int) -> float:  # [factor of LR] at schedule epoch t
        if optim.LR_SCHEDULER == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t / optim.MAX_EPOCH))
        if optim.LR_SCHEDULER == "multi_step":
            return optim.GAMMA ** bisect.bisect_right(sorted(optim.STEPSIZE), t)
        return 1.0

    def factor(epoch: int) -> float:
        if epoch < warmup:
            if optim.WARMUP_TYPE == "constant":
                return optim.WARMUP_CONS_LR / base
            return optim.WARMUP_MIN_LR / base if epoch == 0 else epoch / warmup
        return schedule(epoch - warmup)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
