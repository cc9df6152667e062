"""Contrastive (CLIP-style InfoNCE) pretraining of the toy CLIP on generated image-caption pairs.

    python -m hiprompt.toyworld.pretrain --out hiprompt/toyworld/toy_clip.pt --seed 0 --steps 2000
    python -m hiprompt.toyworld.pretrain --world toy80 --out hiprompt/toyworld/toy80_clip.pt ...

Step s uses images s*B ... s*B+B-1 of the world drawn with `seed`, each with its caption,
so every image is seen once. With `--pool N` the images 0..N-1 are rendered once (in
`--workers` processes) and held as uint8 pixels; each pass over them is a seeded
permutation, and pass e captions every image afresh (`caption_for(..., draw=e)`), so a long
pretraining costs no more drawing than N images. `--anneal FROM END` cuts the schedule of
`--steps` short (its rate at FROM decays to zero at END), so a long run may be ended early
and still cool down. Weights are saved as a float16 state dict, with a JSON record (seed,
steps, pool, loss curve, sha256) next to it.
"""

import argparse
import hashlib
import math
import multiprocessing
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from hiprompt.fileio import atomic_torch_save, atomic_write_json
from hiprompt.toyworld.captions import caption_for
from hiprompt.toyworld.draw import make_image
from hiprompt.toyworld.model import images_to_tensor, pixels_to_tensor
from hiprompt.toyworld.world import TOY, World
from hiprompt.toyworld.worlds import WORLDS, get_world

WARMUP_FRACTION = 0.05


def batch(seed: int, step: int, batch_size: int, tokenizer, world: World = TOY):
    """(images [B, 3, H, W], tokens [B, L]) of one training step."""
    images, captions = [], []
    for index in range(step * batch_size, (step + 1) * batch_size):
        image, sample = make_image(seed, index, world)
        images.append(image)
        captions.append(caption_for(sample, seed, index, world))
    return images_to_tensor(images), tokenizer(captions)


def _render(job):
    seed, indices, world_name = job
    world = get_world(world_name)
    drawn = [make_image(seed, index, world) for index in indices]
    return np.stack([np.asarray(image.convert("RGB")) for image, _ in drawn]), [sample for _, sample in drawn]


class ImagePool:
    """Images 0..size-1 of a world drawn with `seed`, rendered once and kept as uint8 pixels."""

    CHUNK = 256

    def __init__(self, seed: int, size: int, world: World, workers: int = 1):
        self.seed, self.world = seed, world
        jobs = [(seed, range(start, min(start + self.CHUNK, size)), world.name) for start in range(0, size, self.CHUNK)]
        if workers > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_render, jobs)
        else:
            parts = [_render(job) for job in jobs]
        self.pixels = np.concatenate([pixels for pixels, _ in parts])  # [N, H, W, 3] uint8
        self.samples = [sample for _, samples in parts for sample in samples]
        self._order = (None, None)  # (pass, its order): the current pass's

    def __len__(self) -> int:
        return len(self.samples)

    def order(self, epoch: int) -> np.ndarray:
        """The seeded order in which pass `epoch` visits the pool."""
        return np.random.default_rng([self.seed, epoch, 2]).permutation(len(self))

    def batch(self, step: int, batch_size: int, tokenizer):
        """(images [B, 3, H, W], tokens [B, L]) of one training step: the next B images of the
        passes' concatenated orders, each captioned with its pass's draw."""
        indices, captions = [], []
        for position in range(step * batch_size, (step + 1) * batch_size):
            epoch, offset = divmod(position, len(self))
            if self._order[0] != epoch:
                self._order = (epoch, self.order(epoch))
            index = int(self._order[1][offset])
            indices.append(index)
            captions.append(caption_for(self.samples[index], self.seed, index, self.world, draw=epoch))
        return pixels_to_tensor(self.pixels[indices]), tokenizer(captions)


def learning_rate(step: int, steps: int, peak: float, anneal: tuple = None) -> float:
    """Linear warm-up then cosine decay to zero at `steps`. anneal (FROM, END) cuts that
    schedule short: from step FROM on, the rate it had there decays by a cosine to zero at END."""
    if anneal is not None and step >= anneal[0]:
        start, end = anneal
        return 0.5 * learning_rate(start, steps, peak) * (1 + math.cos(math.pi * (step - start) / (end - start)))
    warmup = max(1, int(WARMUP_FRACTION * steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def contrastive_loss(model: CLIP, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    image_features, text_features, logit_scale = model(images, tokens)  # [B, D], [B, D], []
    logits = logit_scale * image_features @ text_features.t()  # [B, B]
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def parameter_groups(model: CLIP, weight_decay: float):
    """Weight decay on matrices and kernels only (not on embeddings, norms, biases, scale)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.ndim >= 2 and "embedding" not in name else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pretrain(seed: int, steps: int, batch_size: int, lr: float, weight_decay: float, log_every: int,
             world: World = TOY, pool: ImagePool = None, checkpoint: Path = None, checkpoint_every: int = 0,
             device: str = "cpu", anneal: tuple = None):
    """Train the world's toy CLIP (on `pool` when given, else on fresh images) on `device`;
    returns (model, losses per step, training seconds). Leaves torch's global RNG and
    determinism setting as they were (deterministic algorithms are asked for on the CPU;
    on CUDA they only warn where none exists).

    checkpoint: a file written (atomically) every `checkpoint_every` steps with the model,
    the optimiser, the losses so far and the settings; when it exists at the start, training
    goes on from it (the settings must be the same), as an uninterrupted run would have.
    anneal: (FROM, END) to cut the `steps` schedule short (see `learning_rate`); a checkpoint
    of the full schedule at or before step FROM goes on into the shortened one.
    """
    if anneal is not None and not 0 <= anneal[0] < anneal[1] <= steps:
        raise ValueError(f"anneal (FROM, END) must satisfy 0 <= FROM < END <= steps={steps}; got {tuple(anneal)}")
    settings = {"world": world.name, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
                "weight_decay": weight_decay, "pool": len(pool) if pool is not None else 0,
                "anneal": list(anneal) if anneal is not None else None}
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=torch.device(device).type != "cpu")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the model is made on the CPU, so its start is the same everywhere
            return _train(settings, log_every, world, pool, checkpoint, checkpoint_every, torch.device(device))
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _resume(checkpoint: Path, settings: dict, model: CLIP, optimiser) -> tuple:
    """(losses, seconds) of the checkpointed steps, model and optimiser restored; ([], 0.0)
    when there is no checkpoint."""
    if checkpoint is None or not checkpoint.is_file():
        return [], 0.0
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    differences = {k: (state["settings"].get(k), v) for k, v in settings.items() if state["settings"].get(k) != v}
    if set(differences) == {"anneal"} and len(state["losses"]) <= min(
            cut[0] if cut else math.inf for cut in differences["anneal"]):
        differences = {}  # both schedules are the same up to the checkpointed step
    if differences:
        raise SystemExit(f"error: {checkpoint} was written with other settings (there, now): {differences}; "
                         "delete it or pass the same settings")
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    print(f"resuming from {checkpoint} at step {len(state['losses'])}", flush=True)
    return list(state["losses"]), float(state["seconds"])


def _train(settings: dict, log_every: int, world: World, pool: ImagePool, checkpoint: Path, checkpoint_every: int,
           device: torch.device):
    seed, steps, batch_size, lr = settings["seed"], settings["steps"], settings["batch_size"], settings["lr"]
    anneal = settings["anneal"]
    end = anneal[1] if anneal else steps
    model = CLIP(**world.clip_architecture).to(device, memory_format=torch.channels_last)
    tokenizer = open_clip.get_tokenizer("RN50")
    optimiser = torch.optim.AdamW(parameter_groups(model, settings["weight_decay"]), lr=lr, betas=(0.9, 0.98),
                                  eps=1e-6)
    losses, seconds_before = _resume(checkpoint, settings, model, optimiser)
    model.train()
    start = time.time()
    for step in range(len(losses), end):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, steps, lr, anneal)
        if pool is None:
            images, tokens = batch(seed, step, batch_size, tokenizer, world)
        else:
            images, tokens = pool.batch(step, batch_size, tokenizer)
        images = images.to(device).contiguous(memory_format=torch.channels_last)
        loss = contrastive_loss(model, images, tokens.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        seconds = seconds_before + time.time() - start
        if log_every and (step + 1) % log_every == 0:
            window = losses[-log_every:]
            print(f"step {step + 1}/{end} loss {sum(window) / len(window):.4f} ({seconds:.0f} s)", flush=True)
        if checkpoint is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < end:
            atomic_torch_save({"settings": settings, "model": model.state_dict(), "optimiser": optimiser.state_dict(),
                               "losses": losses, "seconds": seconds}, checkpoint)
    return model.cpu().eval(), losses, seconds_before + time.time() - start


def float16_state_dict(model: CLIP) -> dict:
    return {k: v.half().contiguous() if v.is_floating_point() else v for k, v in model.state_dict().items()}


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
    parser.add_argument("--anneal", type=int, nargs=2, metavar=("FROM", "END"),
                        help="cut the --steps schedule short: from step FROM its learning rate decays to zero "
                             "at step END (a checkpoint of the full schedule up to FROM goes on into this one)")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--pool", type=int, default=0,
                        help="render this many images once and train on passes over them (0: fresh images every step)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering the pool")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the model trains: cpu | cuda | cuda:N")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--checkpoint-every", type=int, default=200,
                        help="write OUT.ckpt every this many steps (0: never); a run finding it goes on from it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    world = get_world(args.world)
    pool = ImagePool(args.seed, args.pool, world, args.workers) if args.pool else None
    pool_seconds = time.time() - start
    if pool is not None:
        print(f"rendered a pool of {len(pool)} images in {pool_seconds:.0f} s", flush=True)
    checkpoint = args.out.with_suffix(".ckpt")
    model, losses, seconds = pretrain(args.seed, args.steps, args.batch_size, args.lr, args.weight_decay,
                                      args.log_every, world, pool, checkpoint, args.checkpoint_every, args.device,
                                      args.anneal)
    atomic_torch_save(float16_state_dict(model), args.out)
    checkpoint.unlink(missing_ok=True)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    tail = losses[-max(1, len(losses) // 20):]
    record = {
        "world": world.name,
        "config": world.clip_config,
        "config_values": world.clip_architecture,
        "seed": args.seed, "steps": args.steps, "anneal": args.anneal, "pool": args.pool,
        "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "threads": args.threads, "device": args.device,
        "final_loss": round(sum(tail) / len(tail), 4), "loss_curve": loss_summary(losses),
        "logit_scale": round(model.logit_scale.detach().exp().item(), 3),
        "seconds": round(seconds, 1), "pool_seconds": round(pool_seconds, 1), "workers": args.workers,
        "torch": torch.__version__, "weights": args.out.name,
        "sha256": digest,
    }
    atomic_write_json(args.out.with_suffix(".json"), record)
    print(f"wrote {args.out} (sha256 {digest}) in {seconds:.0f} s, final loss {record['final_loss']}")


if __name__ == "__main__":
    main()
