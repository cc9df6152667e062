"""Train and evaluate prompts (CoOp-family command line).

    python train.py --root DATA --seed 1 --trainer HierarchicalCoOp \
        --dataset-config-file configs/datasets/coco.yaml \
        --config-file configs/trainers/HierarchicalCoOp/rn50.yaml \
        --output-dir output/coco/HierarchicalCoOp/rn50/seed1 DATASET.TEXT.DIR knowledge/coco
    python train.py ... --eval-only --model-dir output/.../seed1

Runs on Dassl when it is installed (and HIPROMPT_RUNTIME is not `builtin`), otherwise on
hiprompt's built-in runtime. Configuration: defaults -> dataset YAML -> method YAML ->
flags -> trailing KEY VALUE pairs (as in CoOp, every flag goes before them). An error in the
settings, the data or a checkpoint, or a run folder in use by another run, is printed as one
line (exit status 2); --debug shows its traceback instead. Ctrl-C stops with a line saying
where the run stopped (exit status 130); the same command resumes it.
"""

import argparse
import logging
import sys
from pathlib import Path

import yaml

import datasets  # noqa: F401  (registers the data-set plug-ins)
import trainers.coop  # noqa: F401  (registers the trainers)
import trainers.dualcoop  # noqa: F401
import trainers.hierarchical_coop  # noqa: F401
import trainers.taidpt  # noqa: F401
import trainers.zeroshot_clip  # noqa: F401
from hiprompt.clip import WeightsUnavailableError
from hiprompt.config import (
    ConfigError,
    extend_cfg,
    get_cfg_default,
    merge_file,
    merge_overrides,
    validate_cfg,
)
from hiprompt.data import DataLayoutError
from hiprompt.fileio import FolderBusyError, FolderLock, WriteError
from hiprompt.registry import USING_DASSL
from hiprompt.training.checkpoint import checkpoint_path, latest_epoch
from hiprompt.training.runtime import build_trainer, registered_trainer, set_random_seed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="", help="data root of the test set (DATASET.ROOT)")
    parser.add_argument("--output-dir", default="", help="run folder (OUTPUT_DIR)")
    parser.add_argument("--resume", default="", help="run folder to resume from (RESUME)")
    parser.add_argument("--seed", type=int, default=-1, help="random seed; < 0 for none")
    parser.add_argument("--trainer", default="", help="registered trainer: HierarchicalCoOp, ZeroshotCLIP, CoOp, TaIDPT, DualCoOp")
    parser.add_argument("--backbone", default="", help="backbone name (MODEL.BACKBONE.NAME)")
    parser.add_argument("--weights", default="", help="open_clip tag or local checkpoint (MODEL.BACKBONE.WEIGHTS)")
    parser.add_argument("--dataset-config-file", default="", help="configs/datasets/<name>.yaml")
    parser.add_argument("--config-file", default="", help="configs/trainers/<Trainer>/<backbone>.yaml")
    parser.add_argument("--eval-only", action="store_true", help="evaluate only")
    parser.add_argument("--model-dir", default="", help="run folder whose checkpoint --eval-only loads")
    parser.add_argument("--load-epoch", type=int, default=None, help="checkpoint epoch to load (default: latest)")
    parser.add_argument("--no-train", action="store_true", help="build everything, train nothing")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="trailing KEY VALUE overrides, after every flag")
    args = parser.parse_args(argv)
    flags = {option for action in parser._actions for option in action.option_strings}
    args.late_flags = [item for item in args.opts if item.split("=", 1)[0] in flags]
    return args


def setup_cfg(args):
    if USING_DASSL:
        from dassl.config import get_cfg_default as dassl_defaults

        cfg = extend_cfg(dassl_defaults())
    else:
        cfg = get_cfg_default()
    for path in (args.dataset_config_file, args.config_file):
        if path:
            _merge(path, merge_file, cfg, path)
    flags = {"DATASET.ROOT": args.root, "OUTPUT_DIR": args.output_dir, "RESUME": args.resume,
             "TRAINER.NAME": args.trainer, "MODEL.BACKBONE.NAME": args.backbone,
             "MODEL.BACKBONE.WEIGHTS": args.weights}
    cfg.merge_from_list([item for key, value in flags.items() if value for item in (key, value)])
    if args.seed >= 0:
        cfg.SEED = args.seed
    if args.late_flags:
        raise ConfigError(f"the command line: {args.late_flags[0]} comes after the KEY VALUE overrides; put every "
                          "flag before them (as in CoOp's train.py, all from the first KEY on is read as KEY VALUE pairs)")
    _merge("the command line", merge_overrides, cfg, args.opts)
    validate_cfg(cfg)
    cfg.freeze()
    return cfg


def _merge(source, merge, cfg, what):
    """Merge one source of settings into `cfg`; yacs' errors become a ConfigError naming the source."""
    try:
        merge(cfg, what)
    except yaml.MarkedYAMLError as error:
        mark, context = error.problem_mark, f"{error.context}: " if error.context else ""
        raise ConfigError(f"{source}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML "
                          f"({context}{error.problem})") from None
    except AttributeError:  # yacs, given YAML whose top level is not a mapping
        raise ConfigError(f"{source}: expected a mapping of settings (KEY: value) at the top level") from None
    except (KeyError, AssertionError, ValueError, yaml.YAMLError) as error:
        # yacs: a key the schema lacks (KeyError from a file, AssertionError from a list), an
        # odd KEY VALUE list, a type mismatch; PyYAML: malformed YAML
        text = error.args[0] if isinstance(error, KeyError) else str(error)
        hint = " (the keys are documented in hiprompt/config.py)" if text.startswith("Non-existent") else ""
        raise ConfigError(f"{source}: {text}{hint}") from None


def setup_logging(output_dir: str = "") -> None:
    """Log to stdout and, given a run folder, to its log.txt."""
    handlers = [logging.StreamHandler(sys.stdout)]
    if output_dir:
        handlers.append(logging.FileHandler(Path(output_dir) / "log.txt"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers, force=True)


def run_folder(path) -> Path:
    """The run folder `path` (--output-dir), made if absent; a ValueError naming it when it cannot be."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"--output-dir {path} is an existing file, not a folder: pass a folder path") from None
    except OSError as error:
        raise ValueError(f"--output-dir {path}: cannot make the run folder ({error.strerror}: "
                         f"{error.filename}); pass another folder") from None
    return folder


class Interrupted(Exception):
    """Ctrl-C, with where the run stopped."""


def main(argv=None):
    args = parse_args(argv)
    setup_logging()  # until the run folder is known
    try:
        run(args)
    except (DataLayoutError, WeightsUnavailableError, FileNotFoundError, ValueError, FolderBusyError,
            WriteError) as error:
        if args.debug:
            raise
        logging.error("error: %s", " ".join(line.strip() for line in str(error).splitlines() if line.strip()))
        raise SystemExit(2) from None
    except Interrupted as stop:
        logging.error("interrupted: %s", stop)
        raise SystemExit(130) from None


def run(args):
    cfg = setup_cfg(args)
    trainer = registered_trainer(cfg)  # a wrong --trainer stops before the run folder is made,
    trainer.check_cfg(object.__new__(trainer), cfg)  # and so do settings it cannot use
    purpose = "evaluation" if args.eval_only else "training"
    with FolderLock(run_folder(cfg.OUTPUT_DIR), purpose):  # a second run into the folder stops here
        setup_logging(cfg.OUTPUT_DIR)
        try:
            evaluate_or_train(cfg, args)
        except KeyboardInterrupt:
            if args.debug:
                raise
            raise Interrupted(stopped_at(cfg, args.eval_only)) from None


def evaluate_or_train(cfg, args):
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    logging.info("runtime: %s", "Dassl" if USING_DASSL else "built-in")
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


def stopped_at(cfg, eval_only: bool) -> str:
    """Where an interrupted run stopped, read from its run folder, and how to go on."""
    if eval_only:
        return f"the evaluation stopped before its results were written to {cfg.OUTPUT_DIR}; run the same command again"
    names = {path.parent.name for path in Path(cfg.OUTPUT_DIR).glob("*/model.pth.tar-*")}
    epochs = {name: latest_epoch(cfg.OUTPUT_DIR, name) for name in names}  # a resume takes the lowest
    if not epochs:
        return (f"no checkpoint was saved in {cfg.OUTPUT_DIR} yet; run the same command again to "
                f"{'resume from ' + cfg.RESUME if cfg.RESUME else 'start over'}")
    name, epoch = min(epochs.items(), key=lambda item: item[1])
    return (f"the last checkpoint is {checkpoint_path(cfg.OUTPUT_DIR, name, epoch)} (epoch {epoch} of "
            f"{cfg.OPTIM.MAX_EPOCH}); run the same command again to resume after it")


if __name__ == "__main__":
    main()
