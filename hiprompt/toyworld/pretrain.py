"""Contrastive (CLIP-style InfoNCE) pretraining of the toy CLIP on generated image-caption pairs.

    python -m hiprompt.toyworld.pretrain --out hiprompt/toyworld/toy_clip.pt --seed 0 --steps 2000
    python -m hiprompt.toyworld.pretrain --world toy80 --out hiprompt/toyworld/toy80_clip.pt ...

Step s uses images s*B ... s*B+B-1 of the world drawn with `seed`, each with its caption,
so every image is seen once. Weights are saved as a float16 state dict, with a JSON record
(seed, steps, loss curve, sha256) next to it.
"""

import argparse
import hashlib
import math
import time
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from ..clip.backbone import TINY_CONFIGS
from ..fileio import atomic_torch_save, atomic_write_json
from .captions import caption_for
from .draw import make_image
from .model import images_to_tensor
from .world import TOY, World
from .worlds import WORLDS, get_world

WARMUP_FRACTION = 0.05


def batch(seed: int, step: int, batch_size: int, tokenizer, world: World = TOY):
    """(images [B, 3, H, W], tokens [B, L]) of one training step."""
    images, captions = [], []
    for index in range(step * batch_size, (step + 1) * batch_size):
        image, sample = make_image(seed, index, world)
        images.append(image)
        captions.append(caption_for(sample, seed, index, world))
    return images_to_tensor(images), tokenizer(captions)


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up then cosine decay to zero."""
    warmup = max(1, int(WARMUP_FRACTION * steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def contrastive_loss(model: CLIP, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    image_features, text_features, logit_scale = model(images, tokens)  # [B, D], [B, D], []
    logits = logit_scale * image_features @ text_features.t()  # [B, B]
    targets = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def parameter_groups(model: CLIP, weight_decay: float):
    """Weight decay on matrices and kernels only (not on embeddings, norms, biases, scale)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.ndim >= 2 and "embedding" not in name else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pretrain(seed: int, steps: int, batch_size: int, lr: float, weight_decay: float, log_every: int,
             world: World = TOY):
    """Train the world's toy CLIP; returns (model, losses per step). Leaves torch's global
    RNG and determinism setting as they were."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _train(seed, steps, batch_size, lr, weight_decay, log_every, world)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def _train(seed: int, steps: int, batch_size: int, lr: float, weight_decay: float, log_every: int, world: World):
    model = CLIP(**TINY_CONFIGS[world.clip_config])
    tokenizer = open_clip.get_tokenizer("RN50")
    optimiser = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    losses = []
    model.train()
    start = time.time()
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, steps, lr)
        images, tokens = batch(seed, step, batch_size, tokenizer, world)
        loss = contrastive_loss(model, images, tokens)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            window = losses[-log_every:]
            print(f"step {step + 1}/{steps} loss {sum(window) / len(window):.4f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    return model.eval(), losses


def float16_state_dict(model: CLIP) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


def loss_summary(losses, points: int = 10) -> list:
    """Mean loss over `points` equal windows of training, as [last step of window, mean]."""
    size = max(1, len(losses) // points)
    return [
        [min(start + size, len(losses)), round(sum(losses[start:start + size]) / len(losses[start:start + size]), 4)]
        for start in range(0, len(losses), size)
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default=TOY.name, choices=sorted(WORLDS), help="which toy world")
    parser.add_argument("--out", required=True, type=Path, help="weights file (.pt); the record goes to .json beside it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    world = get_world(args.world)
    model, losses = pretrain(args.seed, args.steps, args.batch_size, args.lr, args.weight_decay, args.log_every, world)
    seconds = time.time() - start
    atomic_torch_save(float16_state_dict(model), args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    tail = losses[-max(1, len(losses) // 20):]
    record = {
        "world": world.name,
        "config": world.clip_config,
        "config_values": TINY_CONFIGS[world.clip_config],
        "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "threads": args.threads,
        "final_loss": round(sum(tail) / len(tail), 4), "loss_curve": loss_summary(losses),
        "logit_scale": round(model.logit_scale.detach().exp().item(), 3),
        "seconds": round(seconds, 1), "torch": torch.__version__, "weights": args.out.name,
        "sha256": digest,
    }
    atomic_write_json(args.out.with_suffix(".json"), record)
    print(f"wrote {args.out} (sha256 {digest}) in {seconds:.0f} s, final loss {record['final_loss']}")


if __name__ == "__main__":
    main()
