"""The `hiprompt` command. `hiprompt tag`: a list of labels and a folder of photos in,
per-image predictions out (the steps are hiprompt.apps.tag's functions).

    hiprompt tag --labels labels.txt --images PHOTOS/ --out predictions.csv
    hiprompt tag --prompts prompts.pt --images MORE_PHOTOS/ --out more.jsonl
    torchrun --nproc-per-node 8 -m hiprompt.apps.cli tag --prompts prompts.pt --out-dir OUT
        --shards 'd/{000000..000099}.tar'     # at scale: a folder of parts (docs/tag-at-scale.md)
    hiprompt tag --status OUT; hiprompt tag --merge OUT all.csv

An error in the settings, the data or the weights, a file that cannot be written (read-only
file system, full disk), another run writing the same --out, a plan made for another run and
a rank that waited too long for the plan are printed as one line (exit status 2).
"""

import argparse
import json
import logging
import sys

from hiprompt.apps import shards, tag
from hiprompt.classnames import read_classes
from hiprompt.clip import WeightsUnavailableError
from hiprompt.data.base import DataLayoutError
from hiprompt.data.knowledge import KnowledgeFolder
from hiprompt.fileio import FileLock, FolderBusyError, WriteError, atomic_write_json
from hiprompt.training.build import build_backbone
from llm_knowledge.backends import DEFAULT_BACKEND, BackendError, backend_names
from llm_knowledge.counts import PROFILES
from llm_knowledge.grouping import GroupingOptions
from llm_knowledge.pipeline import parse_stages


def _add_tag_parser(commands) -> None:
    parser = commands.add_parser(
        "tag", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="tag every image under a folder with your labels",
        description="Make knowledge for the labels with an LLM (cached), learn hierarchical prompts on it "
                    "(cached), and score every JPEG, PNG and WebP image under --images; writes CSV or JSON "
                    "Lines. A rerun with the same --out scores only the images not yet written.",
    )
    what = parser.add_argument_group("labels and images")
    what.add_argument("--labels", help="text file with one label a line (or a built-in set: coco, voc2007, nuswide)")
    what.add_argument("--images", help="folder searched recursively for .jpg .jpeg .png .webp")
    what.add_argument("--out", help="predictions file: .csv or .jsonl (or --out-dir)")
    what.add_argument("--prompts", help="reuse a prompts file (from --export-prompts): no LLM, no training")
    what.add_argument("--export-prompts", metavar="FILE", help="also copy the learned prompts to FILE")
    what.add_argument("--knowledge", help="use this knowledge folder (made by llm-knowledge) instead of asking an LLM")
    llm = parser.add_argument_group("knowledge stage (see llm-knowledge --help)")
    llm.add_argument("--backend", default=DEFAULT_BACKEND, choices=backend_names(), help="who answers")
    llm.add_argument("--model", help="model file (.gguf, GGML .bin) or the server's model name")
    llm.add_argument("--profile", default="paper", choices=sorted(PROFILES), help="how many questions")
    llm.add_argument("--base-url", help="OpenAI-compatible server (openai back-end)")
    llm.add_argument("--max-tokens", type=int, help="new tokens per answer (default: llm-knowledge's)")
    llm.add_argument("--count", action="append", default=[], metavar="NAME=N",
                     help="override one count of the profile (llm-knowledge --set), repeatable")
    llm.add_argument("--stages", type=parse_stages,
                     help="knowledge stages to run (llm-knowledge --stages; default: all)")
    model = parser.add_argument_group("prompts and backbone")
    model.add_argument("--backbone", default="RN50", help="open_clip model name, or tiny / toy")
    model.add_argument("--weights", default="openai",
                       help="open_clip tag, local checkpoint file, or `packaged` (the toy CLIP)")
    model.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                       help="a training setting of hiprompt/config.py, e.g. --set OPTIM.MAX_EPOCH 5 (repeatable)")
    decide = parser.add_argument_group("predictions")
    decide.add_argument("--threshold", type=float, default=tag.DEFAULT_THRESHOLD,
                        help="a label is predicted when its score (its share of the image) reaches this")
    decide.add_argument("--calibrate", metavar="CSV",
                        help="labelled images (`image,labels`, labels joined by |) to fit one threshold per label")
    decide.add_argument("--top-k", type=int, default=tag.DEFAULT_TOP_K, help="labels listed in top_k")
    run = parser.add_argument_group("running")
    run.add_argument("--batch-size", type=int, default=32, help="images per batch")
    run.add_argument("--workers", type=int, default=2, help="image-reading processes")
    run.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--debug", action="store_true", help="show the traceback of an error")
    scale = parser.add_argument_group(
        "at scale: many processes, GPUs and machines (docs/tag-at-scale.md)",
        "--out-dir OUT writes one part per shard; processes come from torchrun, Slurm or --rank/--world-size")
    scale.add_argument("--out-dir", metavar="OUT", help="a folder of parts (OUT/manifest.json, OUT/parts/) on a "
                       "file system every process sees")
    scale.add_argument("--image-list", metavar="FILE", help="input: one image path a line (with --out-dir)")
    scale.add_argument("--image-root", metavar="DIR",
                       help="what --image-list's relative paths (default: the list's folder) or the --shards "
                            "tars (default: their common folder) are relative to")
    scale.add_argument("--shards", metavar="PATTERN",
                       help="input: uncompressed WebDataset-style tars, brace-expanded: 'd/{000000..000009}.tar'")
    scale.add_argument("--shard-size", type=int, default=shards.DEFAULT_SHARD_SIZE,
                       help="images per shard (folder and list inputs; one tar is one shard)")
    scale.add_argument("--format", default="csv", choices=shards.PART_FORMATS,
                       help="the parts' format (parquet needs pyarrow: pip install 'hiprompt[scale]')")
    scale.add_argument("--plan-only", action="store_true", help="write OUT/manifest.json and stop")
    scale.add_argument("--rank", type=int, help="this process's rank (default: torchrun's, Slurm's, or 0)")
    scale.add_argument("--world-size", type=int, help="the number of processes (default: torchrun's, Slurm's, or 1)")
    scale.add_argument("--plan-timeout", type=float, default=600.0,
                       help="seconds a rank other than 0 waits for rank 0's plan")
    scale.add_argument("--status", metavar="OUT", help="print done/total shards and images of OUT, and stop")
    scale.add_argument("--merge", nargs=2, metavar=("OUT", "FILE"),
                       help="concatenate OUT's parts in plan order into FILE (.csv or .jsonl, as --out writes)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiprompt", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_tag_parser(commands)
    return parser


def _device(name: str, local_rank: int = None) -> str:
    """auto: CUDA when available, else the CPU; with a local rank (--out-dir), its own GPU."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return name


def run_tag(args):
    if args.status or args.merge:
        return run_status_or_merge(args)
    if bool(args.out) == bool(args.out_dir):
        raise ValueError("give --out FILE (one predictions file) or --out-dir OUT (a folder of parts), one of them")
    if args.out_dir:
        return run_shards(args)
    if args.images is None:
        raise ValueError("--out needs --images FOLDER (--image-list and --shards write to --out-dir)")
    if args.image_list or args.shards or args.plan_only:
        raise ValueError("--image-list, --shards and --plan-only need --out-dir OUT instead of --out")
    return _run_single_file(args)


def _run_single_file(args) -> tag.TagReport:
    _check_prompt_source(args)
    tag.PredictionFile(args.out, [])  # a .csv or .jsonl name, before anything is made
    with FileLock(args.out, "tagging"):  # a second run writing the same --out stops here
        return _run_tag_locked(args)


def _listed(names) -> str:
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def check_labels_match(labels_spec: str, knowledge) -> None:
    """--labels with --knowledge: the knowledge folder's classes are the ones scored, so the
    labels must be exactly those (in that order), or the run would silently tag other classes."""
    labels, source = read_classes(labels_spec)
    known = KnowledgeFolder(knowledge).classnames
    if labels == known:
        return
    where = f"--labels {source} and --knowledge {knowledge} (its classnames.txt)"
    only_labels = [c for c in labels if c not in known]
    only_knowledge = [c for c in known if c not in labels]
    if not only_labels and not only_knowledge:
        raise ValueError(f"{where} list the same classes in another order (the predictions' columns would "
                         f"follow the knowledge folder's): list them as the folder does, or leave out --labels")
    differences = "; ".join(part for part in (
        f"only in --labels: {_listed(only_labels)}" if only_labels else "",
        f"only in the knowledge folder: {_listed(only_knowledge)}" if only_knowledge else "") if part)
    raise ValueError(f"{where} name different classes ({differences}): make a knowledge folder for these "
                     "labels, or leave out --labels to tag the folder's classes")


def _check_prompt_source(args) -> None:
    if not (0 < args.threshold <= 1):
        raise ValueError(f"--threshold {args.threshold}: expected a number in (0, 1]")
    if bool(args.prompts) == bool(args.labels or args.knowledge):
        raise ValueError("give --labels (or --knowledge) to learn prompts, or --prompts to reuse learned "
                         "ones (they hold their labels), not both")
    if args.labels and args.knowledge:
        check_labels_match(args.labels, args.knowledge)


def _prompts_file(args, cfg, clip):
    """--prompts, or prompts learned now (after the knowledge stage when needed)."""
    prompts = args.prompts
    if not prompts:
        knowledge = args.knowledge
        if not knowledge:
            # a degenerate LLM grouping falls back to this same backbone's text encoder
            grouping = GroupingOptions(backbone=cfg.MODEL.BACKBONE.NAME, weights=cfg.MODEL.BACKBONE.WEIGHTS)
            given = {name: getattr(args, name) for name in ("stages", "base_url", "max_tokens")
                     if getattr(args, name)}
            knowledge = tag.make_knowledge(args.labels, args.backend, args.model, args.profile,
                                           progress=not args.no_progress, counts=args.count, grouping=grouping,
                                           **given)
        prompts = tag.learn_prompts(knowledge, cfg, clip.identity())
    logging.info("prompts: %s", prompts)
    return prompts


def run_status_or_merge(args):
    if args.status and args.merge:
        raise ValueError("--status and --merge: one at a time")
    if args.status:
        state = shards.progress(args.status)
        images = (f"{state['images_done']}/{state['images']} images" if state["images"] is not None
                  else f"{state['images_done']} images in the done tars")
        print(f"{args.status}: {state['shards_done']}/{state['shards']} shards done, {images}"
              + (f"; complete ({shards.REPORT}, {shards.SUCCESS})" if state["complete"] else ""))
        return state
    folder, destination = args.merge
    merged = shards.merge(folder, destination)
    print(f"{destination}: {merged['rows']} images from {merged['shards']} parts of {folder} "
          f"({merged['unreadable']} unreadable left out, listed in {folder}/{shards.REPORT})")
    return merged


def run_shards(args) -> dict:
    """--out-dir: plan once, score the shards this process owns, one part each."""
    source = tag.ShardInput.from_args(args.images, args.image_list, args.shards, args.image_root)
    if args.plan_only:
        rank, world, local, origin = 0, 1, 0, "--plan-only"
    else:
        rank, world, local, origin = shards.resolve_world(args.rank, args.world_size)
    _check_prompt_source(args)
    if world > 1 and not args.prompts:
        raise ValueError(f"{world} processes ({origin}) need --prompts FILE (learned once, e.g. by a one-process "
                         "run with --export-prompts), so that no two ranks train prompts or ask an LLM at once")
    cfg = tag.tag_config(args.backbone, args.weights, args.set)
    clip = build_backbone(cfg)
    prompts = _prompts_file(args, cfg, clip)
    if args.export_prompts and rank == 0:
        tag.export_prompts(prompts, args.export_prompts)
    tagger = tag.Tagger.load(prompts, clip, cfg, device=_device(args.device, local))
    thresholds = [args.threshold] * len(tagger.classnames)
    if args.calibrate:
        thresholds, table = tag.calibrate_thresholds(tagger, args.calibrate, args.batch_size, args.workers,
                                                     args.threshold)
        if rank == 0:
            atomic_write_json(f"{args.out_dir}/thresholds.json", table)
    identity = tag.shard_identity(tagger, thresholds, args.top_k, args.format)
    plan = tag.prepare_plan(args.out_dir, identity, source, args.shard_size, planner=rank == 0,
                            timeout=args.plan_timeout, rank=rank)
    if args.plan_only:
        print(f"{args.out_dir}: planned {len(plan['shards'])} shards ({plan['input']['kind']} input)")
        return {"planned": len(plan["shards"])}
    logging.info("rank %d of %d (%s) on %s", rank, world, origin, tagger.device)
    counts = tag.tag_shards(tagger, args.out_dir, source, plan, rank, world, args.batch_size, args.workers,
                            progress=not args.no_progress and rank == 0)
    print(f"{args.out_dir}: rank {rank} of {world}: {counts['shards_written']} parts written now "
          f"({counts['images']} images, {counts['unreadable']} unreadable), {counts['shards_owned']} owned"
          + ("; every part is there (report.json, _SUCCESS)" if counts["complete"] else ""))
    return counts


def _run_tag_locked(args) -> tag.TagReport:
    cfg = tag.tag_config(args.backbone, args.weights, args.set)
    clip = build_backbone(cfg)  # first: missing weights stop the run before any LLM question
    prompts = _prompts_file(args, cfg, clip)
    if args.export_prompts:
        tag.export_prompts(prompts, args.export_prompts)
        logging.info("exported the prompts to %s", args.export_prompts)
    tagger = tag.Tagger.load(prompts, clip, cfg, device=_device(args.device))
    thresholds = [args.threshold] * len(tagger.classnames)
    if args.calibrate:
        thresholds, table = tag.calibrate_thresholds(tagger, args.calibrate, args.batch_size, args.workers,
                                                 args.threshold)
        logging.info("calibrated thresholds: %s", json.dumps(table))
        atomic_write_json(f"{args.out}.thresholds.json", table)
    report = tag.tag_images(tagger, args.images, args.out, thresholds, args.top_k, args.batch_size,
                            args.workers, progress=not args.no_progress, lock=False)  # run_tag holds it
    print(f"{args.out}: {report.scored} images scored now, {report.already_written} already there, "
          f"{len(report.unreadable)} unreadable (listed in {args.out}.report.json)")
    return report


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr, force=True)
    try:
        run_tag(args)
    except (DataLayoutError, WeightsUnavailableError, BackendError, FileNotFoundError, ValueError, WriteError,
            FolderBusyError, TimeoutError) as error:
        if args.debug:
            raise
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"hiprompt {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
