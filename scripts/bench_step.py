"""The training step at paper scale, side by side with a TaI-DPT-style step, in one run.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python scripts/bench_step.py [--steps 4] [--sizes 100000 400000]
        [--parts step scale] [--device cuda [--prec bf16]]

Step (RN50 architecture, random weights; the 80 COCO classes; 16/8/4/4 = 32 tokens; batch 32;
synthetic descriptions mentioning 1-3 classes; SGD as configured): each side runs in its own
process from the same initial context vectors on the same batches.
- reference, the TaI-DPT way: every step re-encodes its batch of descriptions (frozen, 77
  positions) and all class prompts, global and local set each on its own, at 77 positions;
- this project, store: description features gathered from the store (built once and
  timed on its own), class prompts through the prefix tree;
- this project, on the fly: the batch's descriptions encoded during the step (up to their
  longest end-of-text), class prompts through the prefix tree.
Prints per side the median step time, peak resident memory (whole process, and its growth
during the steps), the FLOPs of one step (torch's FlopCounterMode: matrix products and
attention) and the FLOP/s achieved; the time and memory ratios; the largest loss difference
over the steps; a plain matrix product's FLOP/s on the same threads; a paper-scale COCO
epoch computed from the step times; and a scale run on the tiny backbone: building the store
for synthetic corpora of two sizes and training on them, with each process's peak memory.
"""

import argparse
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from hiprompt.cache.text_features import text_features
from hiprompt.classnames import COCO_CLASSES
from hiprompt.clip import build_clip
from hiprompt.config import PRECISIONS, get_cfg_default
from hiprompt.model.method import PromptedCLIP
from hiprompt.training.prompt_training import build_optimizer
from hiprompt.training.runtime import prompt_autocast

# COCO's 12 supercategories are consecutive runs of its 80 classes in category order
# (person, vehicle, outdoor, animal, accessory, sports, kitchen, food, furniture,
# electronic, appliance, indoor): the coarse groups; fine groups: triples inside them.
SUPERCATEGORY_SIZES = (1, 8, 5, 10, 5, 10, 7, 10, 6, 6, 5, 7)
PAPER_SENTENCES = 15_800 * 100  # the paper profile: ~15,800 questions of ~100 sentences on COCO
WORDS = ("a", "the", "small", "old", "red", "near", "next to", "on", "under", "busy", "street",
         "kitchen", "table", "park", "photo", "with", "and", "while", "sunny", "room")


def coco_groups() -> dict:
    coarse, fine, start = [], [], 0
    for size in SUPERCATEGORY_SIZES:
        members = COCO_CLASSES[start:start + size]
        start += size
        coarse.append(members)
        fine.extend(members[i:i + 3] for i in range(0, size, 3) if len(members[i:i + 3]) > 1)
    return {"coarse": coarse, "fine": fine}


class SyntheticCorpus(Sequence):
    """Sentence i made from i alone (nothing held in memory): 1-3 classes among 6-16 filler words."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self):
        return self.count

    def _draw(self, i: int):
        rng = random.Random(i)
        names = rng.sample(COCO_CLASSES, rng.randint(1, 3))
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
        for name in names:
            words.insert(rng.randint(0, len(words)), name)
        return " ".join(words) + ".", names

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < self.count:
            raise IndexError(i)
        return self._draw(i)[0]

    def labels(self, index) -> torch.Tensor:
        """[B, C] 1 for the classes put in each sentence."""
        labels = torch.zeros(len(index), len(COCO_CLASSES))
        for row, i in enumerate(index):
            for name in self._draw(int(i))[1]:
                labels[row, COCO_CLASSES.index(name)] = 1.0
        return labels


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_parts_mb() -> dict:
    """Resident memory now by kind: anonymous (the process's own) and file-backed (mapped
    page cache, e.g. the store's touched pages, which the kernel can reclaim)."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return {kind: int(fields[f"Rss{kind}"].split()[0]) / 1024 for kind in ("Anon", "File")}


def plain_class_embeddings(prompts):
    """(global [C, D], local [C, D]) the TaI-DPT way: each prompt set on its own, every
    prompt at 77 positions (the library's plain forward, `ClassPromptEncoder`)."""
    return prompts.encoder(prompts.global_context()), prompts.encoder(prompts.local_context())


def build_model(clip, device):
    cfg = get_cfg_default()
    torch.manual_seed(1)  # the same initial context vectors on every side
    model = PromptedCLIP(clip, COCO_CLASSES, coco_groups(), cfg.TRAINER.HIPROMPT).to(device)
    return model, build_optimizer(list(model.prompts.parameters()), cfg.OPTIM)


class OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched (views left out: they launch no kernel)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


def run_side(args) -> dict:
    """One side's steps in this process; returns its figures."""
    device = torch.device(args.device)
    clip = build_clip(args.backbone, "random", seed=0).to(device)
    corpus = SyntheticCorpus(args.steps * args.batch)
    reference = args.side == "reference"
    model, optimizer = build_model(clip, device)
    autocast = prompt_autocast(args.prec, device)
    figures = {"side": args.side}
    feats = None
    if args.side == "store":
        clock = time.process_time if device.type == "cpu" else time.perf_counter  # as the steps are timed
        start = clock()
        feats = text_features(clip, corpus, args.cache, device=device, progress=False)
        figures["store_s_per_sentence"] = (clock() - start) / len(corpus)
    elif args.side == "fly":
        feats = text_features(clip, corpus, args.cache, budget_bytes=0, device=device)

    def loss_of(index):
        """The step's loss; both sides under the same autocast (description features and
        class prompts), the loss itself in float32."""
        labels = corpus.labels(index).to(device)
        with autocast:
            if reference:  # every description at 77 positions
                eot, tokens, mask = clip.encode_text(clip.tokenize([corpus[i] for i in index]))
            else:
                eot, tokens, mask = (t.to(device) for t in feats.batch(index))
            embeddings = plain_class_embeddings(model.prompts) if reference else model.prompts.class_embeddings()
        return model.text_loss(eot.float(), tokens.float(), mask, labels, tuple(e.float() for e in embeddings))[0]

    def step(index):
        loss = loss_of(index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as counter:  # one untimed step, no update
        loss_of(list(range(args.batch))).backward()
    optimizer.zero_grad()
    figures["flops"] = counter.get_total_flops()
    with OperatorCount() as operators:  # one untimed step with its update, as timed below
        step(list(range(args.batch)))
    figures["operators"] = operators.count
    if device.type == "cuda" and args.kernels:
        figures.update(kernel_figures(lambda: step(list(range(args.batch)))))
    rss_before = current_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses, times, cpu_times = [], [], []
    for number in range(args.steps):
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = step(list(range(number * args.batch, (number + 1) * args.batch)))
        sync()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        losses.append(loss.item())
    figures.update(losses=losses, step_s=times, step_cpu_s=cpu_times, peak_rss_mb=peak_rss_mb(),
                   step_growth_mb=peak_rss_mb() - rss_before, threads=torch.get_num_threads())
    if device.type == "cuda":
        figures["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return figures


def kernel_figures(step, repeat: int = 3) -> dict:
    """CUDA kernels launched per step and the share of the step's wall time in which the
    GPU runs one (the union of the kernels' intervals), from torch's profiler."""
    from torch.profiler import ProfilerActivity, profile

    step()  # warm-up outside the profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(repeat):
            step()
        torch.cuda.synchronize()
        wall_us = (time.perf_counter() - start) * 1e6
    kernels = sorted((event.time_range.start, event.time_range.end) for event in prof.events()
                     if event.device_type == torch.autograd.DeviceType.CUDA)
    busy, reach = 0.0, -math.inf
    for begin, end in kernels:  # the union of the intervals
        busy += max(0.0, end - max(begin, reach))
        reach = max(reach, end)
    return {"kernels_per_step": len(kernels) / repeat, "gpu_busy": busy / wall_us}


def run_scale(args) -> dict:
    """Store and training steps on the tiny backbone for a synthetic corpus of args.size sentences."""
    clip = build_clip("tiny", "random", seed=0)
    corpus = SyntheticCorpus(args.size)
    start = time.perf_counter()
    feats = text_features(clip, corpus, args.cache, progress=False)
    build_s = time.perf_counter() - start
    store_bytes = sum(f.stat().st_size for f in feats.folder.iterdir())
    model, optimizer = build_model(clip, "tree", "cpu")
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        index = torch.randint(len(corpus), (args.batch,), generator=generator).tolist()
        loss = model.text_loss(*feats.batch(index), corpus.labels(index), model.prompts.class_embeddings())[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    parts = rss_parts_mb()
    return {"size": args.size, "build_s": build_s, "store_mb": store_bytes / 2**20, "peak_rss_mb": peak_rss_mb(),
            "anon_mb": parts["Anon"], "file_mb": parts["File"]}


def child(argv) -> dict:
    """Run this script on one part in a fresh process (its own peak memory); its last output line is JSON."""
    done = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def matmul_flops_per_s(device: torch.device, size: int = 2048, repeat: int = 5) -> float:
    """FLOP/s of a float32 matrix product: per CPU second on the CPU, per second on CUDA."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    a @ b
    if cuda:
        torch.cuda.synchronize()
    start = clock()
    for _ in range(repeat):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    return 2 * size**3 * repeat / (clock() - start)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side (default 4)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs=2, default=(100_000, 400_000), help="scale-run corpus sizes")
    parser.add_argument("--scale-steps", type=int, default=50, help="training steps of each scale run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="RN50", help="the step's CLIP architecture, random weights (default "
                        "RN50; `tiny` for a quick try)")
    parser.add_argument("--parts", nargs="+", choices=("step", "operators", "scale"),
                        default=("step", "operators", "scale"), help="what to run (default all)")
    parser.add_argument("--prec", default="auto", choices=PRECISIONS, help="TRAINER.HIPROMPT.PREC of both sides "
                        "(default auto: bf16 autocast on CUDA, fp32 on the CPU)")
    parser.add_argument("--no-kernels", dest="kernels", action="store_false", help="on CUDA, leave out the "
                        "profiled step that counts kernels and the GPU's busy share")
    parser.add_argument("--side", choices=("reference", "store", "fly"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(run_side(args)))
        return
    if args.size:
        print(json.dumps(run_scale(args)))
        return

    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()} "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), device {args.device}, "
          f"torch {torch.__version__}, python {platform.python_version()}")
    if "step" in args.parts:
        step_part(args)
    if "operators" in args.parts:
        operators_part(args)
    if "scale" in args.parts:
        scale_part(args)


def step_part(args):
    common = ["--steps", str(args.steps), "--batch", str(args.batch), "--device", args.device, "--prec", args.prec,
              "--backbone", args.backbone] + ([] if args.kernels else ["--no-kernels"])
    sides = {}
    for side in ("reference", "store", "fly"):
        with tempfile.TemporaryDirectory() as cache:  # each side its own: the fly side finds no store
            sides[side] = child(common + ["--side", side, "--cache", cache])
        print(f"  ran {side}: steps {[round(t, 2) for t in sides[side]['step_s']]} s wall, "
              f"{[round(t, 2) for t in sides[side]['step_cpu_s']]} s CPU", flush=True)
    matmul = matmul_flops_per_s(torch.device(args.device))
    names = {"reference": "reference (TaI-DPT way)", "store": "this project, store", "fly": "this project, on the fly"}
    # One thread per process: CPU seconds are what a step costs whatever else the machine
    # runs; wall seconds are shown beside them. On CUDA, wall seconds.
    timing = "step_cpu_s" if args.device == "cpu" else "step_s"
    cuda = "kernels_per_step" in sides["reference"]
    print(f"\nstep: {args.backbone} random weights, 80 classes, 16/8/4/4, batch {args.batch}, {args.prec}, median of "
          f"{args.steps} steps; times in {'CPU' if timing == 'step_cpu_s' else 'wall'} seconds; operators: "
          "dispatched per step (forward, backward, update; views left out)")
    print(f"{'':26} {'step s':>8} {'wall s':>8} {'peak RSS MB':>12} {'growth MB':>10} {'GFLOP/step':>11} "
          f"{'GFLOP/s':>8} {'operators':>10}" + (f" {'kernels':>8} {'GPU busy':>9}" if cuda else ""))
    median = {}
    for side, figures in sides.items():
        median[side] = statistics.median(figures[timing])
        print(f"{names[side]:26} {median[side]:8.3f} {statistics.median(figures['step_s']):8.3f} "
              f"{figures['peak_rss_mb']:12.0f} {figures['step_growth_mb']:10.0f} "
              f"{figures['flops'] / 1e9:11.1f} {figures['flops'] / 1e9 / median[side]:8.1f} {figures['operators']:10d}"
              + (f" {figures['kernels_per_step']:8.0f} {100 * figures['gpu_busy']:8.0f}%" if cuda else ""))
    print(f"plain matrix product (2048 x 2048, float32): {matmul / 1e9:.1f} GFLOP per "
          f"{'CPU second' if timing == 'step_cpu_s' else 'second'}")
    ref = sides["reference"]
    for side in ("store", "fly"):
        figures = sides[side]
        difference = max(abs(a - b) for a, b in zip(figures["losses"], ref["losses"]))
        print(f"{names[side]}: {median['reference'] / median[side]:.1f}x faster, peak RSS ratio "
              f"(reference / this) {ref['peak_rss_mb'] / figures['peak_rss_mb']:.2f}, step growth ratio "
              f"{ref['step_growth_mb'] / max(figures['step_growth_mb'], 1):.1f}, largest loss difference over "
              f"{args.steps} steps {difference:.2e} (losses {[round(v, 4) for v in figures['losses']]})")
        if "cuda_peak_mb" in figures:
            print(f"  CUDA peak allocated: reference {ref['cuda_peak_mb']:.0f} MB, "
                  f"this {figures['cuda_peak_mb']:.0f} MB")
    print(f"reference losses {[round(v, 4) for v in ref['losses']]}")
    steps = PAPER_SENTENCES // args.batch
    store_h = sides["store"]["store_s_per_sentence"] * PAPER_SENTENCES / 3600
    print(f"\npaper-scale COCO epoch, computed ({PAPER_SENTENCES:,} sentences = {steps:,} steps of {args.batch}) "
          f"from the median step times above on this machine: reference {steps * median['reference'] / 3600:.1f} h, "
          f"store {steps * median['store'] / 3600:.1f} h (+ {store_h:.1f} h once to build the store), "
          f"on the fly {steps * median['fly'] / 3600:.1f} h")


def operators_part(args):
    """How the prompt encoding's operator count grows with classes and groups (forward and
    backward of both sets' class embeddings; views left out)."""
    clip = build_clip(args.backbone, "random", seed=0).to(args.device)
    cfg = get_cfg_default()
    print(f"\nprompt encoding, operators per forward + backward ({args.backbone}, 16/8/4/4, global and local "
          "sets): tree (this project) and full (each set at 77 positions, the reference's way)")
    print(f"{'classes':>8} {'coarse':>7} {'fine':>5} {'tree ops':>9} {'full ops':>9} {'tree positions':>15}")
    for copies in (1, 4):
        classnames = [f"{name} {copy}" if copy else name for copy in range(copies) for name in COCO_CLASSES]
        groups = {level: [[f"{name} {copy}" if copy else name for name in group] for copy in range(copies)
                          for group in coco_groups()[level]] for level in ("coarse", "fine")}
        for grouped in (False, True):
            model = PromptedCLIP(clip, classnames, groups if grouped else {}, cfg.TRAINER.HIPROMPT)
            row = {"positions": model.prompts.tree.tokens_per_layer}
            for side, embed in (("tree", lambda p: p.class_embeddings()), ("full", plain_class_embeddings)):
                with OperatorCount() as operators:
                    global_emb, local_emb = embed(model.prompts)
                    (global_emb.sum() + local_emb.sum()).backward()
                row[side] = operators.count
            n_coarse = len(groups["coarse"]) if grouped else 0
            n_fine = len(groups["fine"]) if grouped else 0
            print(f"{len(classnames):8d} {n_coarse:7d} {n_fine:5d} {row['tree']:9d} {row['full']:9d} "
                  f"{row['positions']:15d}", flush=True)


def scale_part(args):
    print("\nscale run: tiny backbone, store built then "
          f"{args.scale_steps} training steps of {args.batch}, each size in its own process")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as cache:
            figures = child(["--size", str(size), "--steps", str(args.scale_steps), "--batch", str(args.batch),
                             "--cache", cache])
        print(f"  {size:>9,} sentences: store {figures['store_mb']:8.1f} MB on disk, "
              f"built in {figures['build_s']:6.0f} s, peak RSS {figures['peak_rss_mb']:6.0f} MB; "
              f"at the end anonymous {figures['anon_mb']:6.0f} MB, file-backed {figures['file_mb']:6.0f} MB",
              flush=True)


if __name__ == "__main__":
    main()
