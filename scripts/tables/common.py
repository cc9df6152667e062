"""What every table script shares: the world (data set config, data, knowledge), the runs a
table needs, running only what is missing, and the table beside the paper's numbers.

A run is one `train.py` call per seed into `OUTPUT/<world>/<trainer>/<name>/seed<S>`; a
finished seed (its `results_test.json`) is skipped and an interrupted one resumes from its
last checkpoint, so a table script can be stopped and started again. Runs with the same
trainer and settings are shared between tables. Evaluation-only rows (another λ2, the peer
metric conventions) evaluate a trained run's prompts into their own folder.

`--protocol paper,peer` (the scripts built on `compare_main`) adds the columns of the peers'
model selection (`TEST.PROTOCOL peer`, hiprompt/training/protocol.py) beside this project's:
an evaluation-only row of each trained run, choosing among its saved epochs, or a run of its
own where the protocol changes the training data (DualCoOp on COCO's images).
"""

import argparse
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np
from tabulate import tabulate

from hiprompt.choices import check_choice
from hiprompt.fileio import atomic_write_bytes, atomic_write_text
from hiprompt.training.protocol import PROTOCOLS, peer_selection
from hiprompt.training.runs import CONTEXT_KEYS, context_opts
from hiprompt.training.runs import split_context as split_tokens  # noqa: F401 (figure4a's name for it)
from hiprompt.training.summarize import RESULT_FILE, collect, mean_std

REPO = Path(__file__).resolve().parents[2]
QUICK_EPOCHS = 2  # --quick: the schedule cut to this many epochs, one seed
PAPER_DATASETS = {"coco": "MS-COCO", "coco2017": "MS-COCO", "voc2007": "VOC2007", "nuswide": "NUS-WIDE"}
TOY_TEST_IMAGES = {"toy": 400, "toy80": 2000}  # held-out images of a generated world, as scripts/main.sh
TOY_TRAIN_IMAGES, TOY_TRAIN_SEED = 1000, 2  # training images (DualCoOp) and their captions (TaI-DPT)


@dataclass
class Run:
    """One row's runs. text: the training text (`llm`, `captions`, or None: zero-shot or images);
    images: trained on the world's training images (DualCoOp); evaluates: the run whose
    prompts this evaluation-only row scores with `opts`."""

    label: str
    trainer: str
    opts: tuple = ()
    text: Optional[str] = "llm"
    images: bool = False
    evaluates: Optional["Run"] = None
    paper: dict = field(default_factory=dict)  # {"F1": x, "mAP": y} for the paper's data set

    @property
    def trained(self) -> bool:
        return self.evaluates is None and self.trainer != "ZeroshotCLIP"

    def name(self) -> str:
        """The run folder's name: the training text, then the settings, shortened; an evaluation's
        is its trained run's name, `__eval_`, and its own settings."""
        settings = dict(zip(self.opts[::2], self.opts[1::2]))
        counts = [settings.pop(key, None) for key in CONTEXT_KEYS]
        parts = [] if self.evaluates else [self.text or ("images" if self.images else "none")]
        if any(c is not None for c in counts):
            parts.append("ctx" + "-".join(str(c or 0) for c in counts))
        parts += [f"{re.sub(r'^TRAINER[.](HIPROMPT|DUALCOOP)[.]', '', k)}-{v}" for k, v in settings.items()]
        name = re.sub(r"[^A-Za-z0-9.=-]+", "_", "_".join(parts))
        return f"{self.evaluates.name()}__eval_{name}" if self.evaluates else name


def composition(s: int, p1: int, p2: int, c: int) -> tuple:
    """The overrides setting S/P-S#1/P-S#2/C-S; the default split of n tokens is
    `split_tokens(n)` (hiprompt/training/runs.py, as scripts/main.sh)."""
    return context_opts((s, p1, p2, c))


class World:
    """The data set a table runs on, its data and knowledge, and where runs go."""

    def __init__(self, args):
        self.name = args.world
        self.dataset_cfg = REPO / "configs" / "datasets" / f"{self.name}.yaml"
        if not self.dataset_cfg.is_file():
            raise SystemExit(f"error: --world {self.name}: {self.dataset_cfg} not found")
        self.toy = self.name.startswith("toy")
        own = REPO / "configs" / "trainers" / "HierarchicalCoOp" / f"{self.name}.yaml"
        self.backbone = args.backbone or (self.name if own.is_file() else "rn50")
        self.data = Path(args.data or f"data/{self.name}")
        self.train_data = Path(args.train_data or f"data/{self.name}-train")
        self.knowledge = Path(args.knowledge or f"knowledge/{self.name}")
        self.captions_knowledge = Path(args.captions_knowledge or f"knowledge/{self.name}-captions")
        self.captions = args.captions
        self.generator = args.generator
        self.quick = args.quick
        self.seeds = [1] if args.quick and not args.seeds else (args.seeds or [1, 2, 3])
        self.output = Path(args.output or ("output/tables-quick" if args.quick else "output/tables")) / self.name
        self.weights = args.weights
        self.paper_dataset = PAPER_DATASETS.get(self.name, "MS-COCO")
        self.protocols = protocols(getattr(args, "protocol", "paper"))

    # -- inputs -----------------------------------------------------------------------------
    def _generate(self, out: Path, seed: int, count: int, what: str):
        world = [] if self.name == "toy" else ["--world", self.name]
        self._call([sys.executable, "-m", self.generator, *world, "--out", out, "--seed", seed,
                    "--n-images", count], what)

    def _call(self, command, what):
        print(f"  {what}: {' '.join(map(str, command))}", flush=True)
        done = subprocess.run([str(c) for c in command], cwd=REPO)
        if done.returncode != 0:
            raise SystemExit(f"error: {what} failed (exit status {done.returncode})")

    def prepare(self, runs):
        """Make what the runs need and is missing: toy-world images, knowledge folders."""
        if self.toy and not (self.data / "labels.csv").is_file():
            self._generate(self.data, 1, TOY_TEST_IMAGES.get(self.name, 400), "test images")
        if any(r.text == "llm" for r in runs):
            env = {**os.environ, "DATA": str(self.data)}
            print(f"  knowledge: bash scripts/knowledge.sh {self.name} {self.knowledge}", flush=True)
            if subprocess.run(["bash", "scripts/knowledge.sh", self.name, str(self.knowledge)],
                              cwd=REPO, env=env).returncode != 0:
                raise SystemExit("error: the knowledge folder could not be made (see above)")
        needs_train = any(r.images or r.text == "captions" for r in runs)
        if needs_train and self.toy and not (self.train_data / "labels.csv").is_file():
            self._generate(self.train_data, TOY_TRAIN_SEED, TOY_TRAIN_IMAGES, "training images and their captions")
        if any(r.text == "captions" for r in runs) and not (self.captions_knowledge / "corpus.jsonl").is_file():
            captions = self.captions or (self.train_data / "captions.jsonl" if self.toy else None)
            if captions is None:
                raise SystemExit(f"error: no caption knowledge folder {self.captions_knowledge}: pass --captions "
                                 "annotations/captions_train2014.json (COCO's captions file) or "
                                 "--captions-knowledge DIR")
            classes = self.data / "classnames.txt" if self.toy else self.name.replace("2017", "")
            recipe = [] if self.toy else ["--recipe", "taidpt"]  # TaI-DPT's sample, cap and templates
            self._call([sys.executable, "-m", "llm_knowledge.captions", "--classes", classes, "--captions",
                        captions, *recipe, "--out", self.captions_knowledge], "caption knowledge")

    # -- runs -------------------------------------------------------------------------------
    def folder(self, run: Run) -> Path:
        base = run.evaluates.trainer if run.evaluates else run.trainer
        return self.output / base / run.name()

    def _seed_dirs(self, run: Run):
        if run.trainer == "ZeroshotCLIP" and run.evaluates is None:
            return [(None, self.folder(run))]
        return [(seed, self.folder(run) / f"seed{seed}") for seed in self.seeds]

    def _command(self, run: Run, seed, out: Path) -> list:
        trainer = run.evaluates.trainer if run.evaluates else run.trainer
        config = REPO / "configs" / "trainers" / trainer / f"{self.backbone}.yaml"
        for_this_data = config.with_name(f"{self.backbone}_{self.name}.yaml")  # e.g. TaI-DPT's rn50_nuswide
        command = [sys.executable, "train.py", "--root", self.data, "--trainer", trainer,
                   "--dataset-config-file", self.dataset_cfg,
                   "--config-file", for_this_data if for_this_data.is_file() else config,
                   "--output-dir", out]
        if self.weights:
            command += ["--weights", self.weights]
        if seed is not None:
            command += ["--seed", seed]
        source = run.evaluates or run
        if not run.trained:
            command += ["--eval-only"]
            if run.evaluates is not None:
                command += ["--model-dir", self.folder(run.evaluates) / f"seed{seed}"]
        opts = list(source.opts) + (list(run.opts) if run.evaluates else [])
        if source.text == "llm":
            opts += ["DATASET.TEXT.DIR", self.knowledge]
        elif source.text == "captions":
            opts += ["DATASET.TEXT.DIR", self.captions_knowledge]
        if source.images and self.toy:
            opts += ["DATASET.TRAIN_CSV", (self.train_data / "labels.csv").resolve()]
        if self.quick and run.trained:
            opts += ["OPTIM.MAX_EPOCH", QUICK_EPOCHS]
        return command + opts

    def run(self, run: Run, index: int, total: int):
        if run.evaluates is not None:
            self.run(run.evaluates, index, total)
        for seed, out in self._seed_dirs(run):
            if (out / "results_test.json").is_file():
                continue
            what = f"[{index}/{total}] {run.label}" + (f", seed {seed}" if seed is not None else "")
            print(f"{what}: {out}", flush=True)
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "table_run.log", "w") as log:
                done = subprocess.run([str(c) for c in self._command(run, seed, out)], cwd=REPO,
                                      stdout=log, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                tail = (out / "table_run.log").read_text().splitlines()[-15:]
                raise SystemExit(f"error: {what} failed (exit status {done.returncode}); the end of "
                                 f"{out / 'table_run.log'}:\n" + "\n".join(tail))

    def results(self, run: Run) -> dict:
        return collect(self.folder(run))

    def epochs(self, run: Run) -> list:
        """The epoch each finished seed of `run` reported (its results file's `epoch`)."""
        return [json.loads(path.read_text()).get("epoch") for path in sorted(self.folder(run).glob(f"*/{RESULT_FILE}"))]

    @cached_property
    def dataset_name(self) -> str:
        """DATASET.NAME of the world's data set config (read once)."""
        import yaml

        return (yaml.safe_load(self.dataset_cfg.read_text()) or {}).get("DATASET", {}).get("NAME", "")

    def under(self, run: Run, protocol: str) -> Run:
        """`run` under TEST.PROTOCOL `protocol`: itself for `paper` and for runs with nothing to
        select (zero-shot); an evaluation-only row of its trained run, choosing among the saved
        epochs; a training of its own where the protocol changes what the run trains on
        (DualCoOp's images without an annotation, on COCO)."""
        if protocol == "paper" or (run.evaluates is None and not run.trained):
            return run
        setting = ("TEST.PROTOCOL", protocol)
        trained = run.evaluates or run
        if trained.images and peer_selection(trained.trainer, self.dataset_name).drop_unannotated:
            own = Run(trained.label, trained.trainer, tuple(trained.opts) + setting, text=trained.text,
                      images=True, paper=trained.paper)
            return Run(run.label, run.trainer, run.opts, evaluates=own, paper=run.paper) if run.evaluates else own
        return Run(run.label, trained.trainer, tuple(run.opts if run.evaluates else ()) + setting,
                   evaluates=trained, paper=run.paper)


# -- output -------------------------------------------------------------------------------
def cell(stats) -> str:
    return "–" if stats is None else f"{stats[0]:.2f} ± {stats[1]:.2f}"


def paper_cell(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def protocols(text: str) -> list:
    """The protocols of `--protocol` (a comma list of hiprompt.training.protocol.PROTOCOLS)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    try:
        return [check_choice(name, PROTOCOLS, "--protocol") for name in names] or ["paper"]
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def protocol_headers(world: World, metrics=("F1@3", "mAP")) -> list:
    """The measured columns: `metrics` per protocol (suffixed but for `paper`), the seeds, and
    the epochs the peer protocol chose."""
    headers = [f"{m}{'' if p == 'paper' else f' ({p})'}" for p in world.protocols for m in metrics] + ["seeds"]
    return headers + [f"epochs ({p})" for p in world.protocols if p != "paper"]


def measured_rows(world: World, runs, metrics=("F1@3", "mAP")):
    """[label, paper values..., measured mean ± std per protocol..., seeds, chosen epochs...] per run."""
    rows = []
    for run in runs:
        paper = [paper_cell(run.paper.get(m.split("@")[0])) for m in metrics]
        measured = []
        for protocol in world.protocols:
            results = world.results(world.under(run, protocol))
            if not measured:
                seeds = len(results)  # the seeds column: the first protocol's
            measured += [cell(mean_std(results, m)) for m in metrics]
        epochs = [", ".join("–" if e is None else str(e) for e in world.epochs(world.under(run, p)))
                  for p in world.protocols if p != "paper"]
        rows.append([run.label, *paper, *measured, seeds, *epochs])
    return rows


def write_outputs(world: World, name: str, title: str, headers, rows, figure) -> str:
    """Print the table and write `<name>.md` and `<name>.png` (drawn by `figure(axes)`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markdown = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    seeds = ", ".join(map(str, world.seeds))
    note = (f"{title}\n\nWorld `{world.name}` (configs/datasets/{world.name}.yaml), backbone config "
            f"`{world.backbone}`, seeds {seeds}{', quick mode (' + str(QUICK_EPOCHS) + ' epochs)' if world.quick else ''}; "
            f"paper: its {world.paper_dataset} numbers.\n\n")
    text = note + markdown + "\n"
    print(text)
    world.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(world.output / f"{name}.md", text)
    fig, axes = plt.subplots(figsize=(8, 4.5))
    figure(axes)
    axes.set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(world.output / f"{name}.png", buffer.getvalue())
    print(f"wrote {world.output / (name + '.md')} and {world.output / (name + '.png')}")
    return text


def bar_figure(world: World, runs, metric="mAP"):
    """Bars of the measured metric (mean, std as error bar) with the paper's value as a dot."""
    def draw(axes):
        stats = [mean_std(world.results(r), metric) or (np.nan, 0.0) for r in runs]
        x = np.arange(len(runs))
        axes.bar(x, [s[0] for s in stats], yerr=[s[1] for s in stats], color="#7aa6c2", label="measured")
        paper = [r.paper.get(metric, np.nan) for r in runs]
        axes.plot(x, paper, "o", color="#c0392b", label=f"paper ({world.paper_dataset})")
        axes.set_xticks(x, [r.label for r in runs], rotation=30, ha="right", fontsize=7)
        axes.set_ylabel(metric)
        axes.legend(fontsize=8)
    return draw


def line_figure(world: World, runs, xs, xlabel, metrics=("mAP", "F1@3")):
    """Measured metrics against a swept setting; the paper's points where it gives them."""
    def draw(axes):
        for metric, colour in zip(metrics, ("#2e86c1", "#28b463")):
            stats = [mean_std(world.results(r), metric) or (np.nan, 0.0) for r in runs]
            axes.errorbar(xs, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", color=colour,
                          label=f"{metric} measured")
            paper = [r.paper.get(metric.split("@")[0], np.nan) for r in runs]
            axes.plot(xs, paper, "s", color=colour, alpha=0.5, label=f"{metric} paper ({world.paper_dataset})")
        axes.set_xlabel(xlabel)
        axes.legend(fontsize=8)
    return draw


def parse_args(description: str, argv=None, extra=None):
    """The options every table script takes; `extra(parser)` adds a script's own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="toy", help="data set config under configs/datasets/ (toy, coco, voc2007, nuswide, ...)")
    parser.add_argument("--quick", action="store_true", help=f"one seed, {QUICK_EPOCHS} epochs: proves the script end to end")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default 1 2 3; --quick: 1)")
    parser.add_argument("--backbone", default="", help="config name under configs/trainers/<Trainer>/ (default: the world's own, else rn50)")
    parser.add_argument("--weights", default="", help="CLIP weights (tag or file) overriding the config")
    parser.add_argument("--data", default="", help="the test set's root (default data/<world>)")
    parser.add_argument("--train-data", default="", help="training images (toy worlds: generated when absent; default data/<world>-train)")
    parser.add_argument("--knowledge", default="", help="LLM knowledge folder (default knowledge/<world>; made by scripts/knowledge.sh when absent)")
    parser.add_argument("--captions-knowledge", default="", help="caption knowledge folder (default knowledge/<world>-captions)")
    parser.add_argument("--captions", default="", help="caption file to make the caption folder from (COCO: annotations/captions_train2014.json)")
    parser.add_argument("--generator", default="hiprompt.toyworld.generate", help="module generating a toy world's images")
    parser.add_argument("--output", default="", help="runs and tables go under OUTPUT/<world> (default output/tables, quick: output/tables-quick)")
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def compare_main(description: str, argv, name: str, title: str, first_column: str, runs, figure=None):
    """A table script's whole job: the world from the command line, the runs `runs(world)`
    (the missing ones run), then the table of paper vs measured F1@3 and mAP, drawn by
    `figure(world, runs)` (default: bars)."""
    world = World(parse_args(description, argv, extra=protocol_option))
    rows = runs(world)
    run_all(world, [world.under(r, p) for p in world.protocols for r in rows])
    draw = (figure or bar_figure)(world, rows)
    write_outputs(world, name, title, [first_column, "paper F1", "paper mAP", *protocol_headers(world)],
                  measured_rows(world, rows), draw)


def protocol_option(parser):
    parser.add_argument("--protocol", default="paper",
                        help=f"comma list of {', '.join(PROTOCOLS)} (TEST.PROTOCOL): the columns of each, side "
                             "by side (peer: the epoch TaI-DPT's / DualCoOp's code would keep; default paper)")


def run_all(world: World, runs):
    unique = list({world.folder(r): r for r in runs}.values())
    world.prepare(unique)
    for index, run in enumerate(unique, 1):
        world.run(run, index, len(unique))


def paper_row(table: dict, label: str, dataset: str) -> dict:
    """{"F1": x, "mAP": y} of `label` for `dataset` from {label: {dataset: (F1, mAP)}}."""
    values = table.get(label, {}).get(dataset)
    return {} if values is None else {"F1": values[0], "mAP": values[1]}


# -- the runs the tables share (same trainer and settings -> the same run folder) ------------
def zero_shot(paper=None) -> Run:
    return Run("Hand-crafted prompts (zero-shot)", "ZeroshotCLIP", text=None, paper=paper or {})


def ours(label="Ours: hierarchical 16/8/4/4, LLM text", paper=None, opts=(), counts=(16, 8, 4, 4)) -> Run:
    return Run(label, "HierarchicalCoOp", composition(*counts) + tuple(opts), paper=paper or {})


def coop(csc=False, paper=None) -> Run:
    if csc:
        return Run("CoOp CSC (16 C-S, global), LLM text", "CoOp", composition(0, 0, 0, 16), paper=paper or {})
    return Run("CoOp (16 S, global), LLM text", "CoOp", composition(16, 0, 0, 0), paper=paper or {})


def taidpt(paper=None) -> Run:
    return Run("TaI-DPT (16 S, global + local), captions", "TaIDPT", text="captions", paper=paper or {})


def dualcoop_images(paper=None) -> Run:
    return Run("DualCoOp, images with half of the labels hidden", "DualCoOp", text=None, images=True,
               paper=paper or {})


def dualcoop_text(paper=None) -> Run:
    return Run("DualCoOp, LLM text", "DualCoOp", ("TRAINER.DUALCOOP.TRAIN_DATA", "text"), paper=paper or {})
