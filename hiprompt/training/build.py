"""What a config builds: the frozen backbone (MODEL.BACKBONE), the test transform (INPUT.*),
the optimiser and its schedule (OPTIM.*). The one place each is made from a config; the
choice lists here are the ones `hiprompt.config` validates against."""

import torch

from hiprompt.clip import ClipBackbone, build_clip
from hiprompt.data.transforms import TestTransform

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}  # OPTIM.NAME
LR_SCHEDULERS = ("multi_step", "cosine", "constant")  # OPTIM.LR_SCHEDULER, stepped once per epoch


def build_backbone(cfg) -> ClipBackbone:
    backbone = cfg.MODEL.BACKBONE
    return build_clip(backbone.NAME, backbone.WEIGHTS, activation=backbone.ACTIVATION,
                      dense_pos_embed=backbone.DENSE_POS_EMBED)


def build_test_transform(cfg) -> TestTransform:
    return TestTransform(size=tuple(cfg.INPUT.SIZE), mode=cfg.INPUT.TEST_RESIZE, mean=tuple(cfg.INPUT.PIXEL_MEAN),
                         std=tuple(cfg.INPUT.PIXEL_STD), interpolation=cfg.INPUT.INTERPOLATION)


def build_optimizer(params, optim):
    """OPTIM.NAME's optimiser (validated by hiprompt.config)."""
    if optim.NAME == "sgd":
        return torch.optim.SGD(params, lr=optim.LR, momentum=optim.MOMENTUM, weight_decay=optim.WEIGHT_DECAY)
    return OPTIMIZERS[optim.NAME](params, lr=optim.LR, weight_decay=optim.WEIGHT_DECAY)


def build_scheduler(optimizer, optim):
    """OPTIM.LR_SCHEDULER's schedule, stepped once per epoch."""
    if optim.LR_SCHEDULER == "multi_step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(optim.STEPSIZE), optim.GAMMA)
    if optim.LR_SCHEDULER == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, optim.MAX_EPOCH)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
