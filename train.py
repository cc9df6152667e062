"""Train and evaluate prompts (CoOp-family command line).

    python train.py --root DATA --seed 1 --trainer HierarchicalCoOp \
        --dataset-config-file configs/datasets/coco.yaml \
        --config-file configs/trainers/HierarchicalCoOp/rn50.yaml \
        --output-dir output/coco/HierarchicalCoOp/rn50/seed1 DATASET.TEXT.DIR knowledge/coco
    python train.py ... --eval-only --model-dir output/.../seed1

Runs on Dassl when it is installed (and HIPROMPT_RUNTIME is not `builtin`), otherwise on
hiprompt's built-in runtime. Configuration: defaults -> dataset YAML -> method YAML ->
flags -> trailing KEY VALUE pairs.
"""

import argparse
import logging
import sys
from pathlib import Path

import datasets  # noqa: F401  (registers the data-set plug-ins)
import trainers.hierarchical_coop  # noqa: F401  (registers the trainers)
import trainers.zeroshot_clip  # noqa: F401
from hiprompt.clip import WeightsUnavailableError
from hiprompt.config import extend_cfg, get_cfg_default
from hiprompt.data import DataLayoutError
from hiprompt.registry import USING_DASSL
from hiprompt.runtime import build_trainer, set_random_seed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="", help="data root of the test set (DATASET.ROOT)")
    parser.add_argument("--output-dir", default="", help="run folder (OUTPUT_DIR)")
    parser.add_argument("--resume", default="", help="run folder to resume from (RESUME)")
    parser.add_argument("--seed", type=int, default=-1, help="random seed; < 0 for none")
    parser.add_argument("--trainer", default="", help="registered trainer: HierarchicalCoOp, ZeroshotCLIP")
    parser.add_argument("--backbone", default="", help="backbone name (MODEL.BACKBONE.NAME)")
    parser.add_argument("--weights", default="", help="open_clip tag or local checkpoint (MODEL.BACKBONE.WEIGHTS)")
    parser.add_argument("--dataset-config-file", default="", help="configs/datasets/<name>.yaml")
    parser.add_argument("--config-file", default="", help="configs/trainers/<Trainer>/<backbone>.yaml")
    parser.add_argument("--eval-only", action="store_true", help="evaluate only")
    parser.add_argument("--model-dir", default="", help="run folder whose checkpoint --eval-only loads")
    parser.add_argument("--load-epoch", type=int, default=None, help="checkpoint epoch to load (default: latest)")
    parser.add_argument("--no-train", action="store_true", help="build everything, train nothing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="trailing KEY VALUE overrides")
    return parser.parse_args(argv)


def setup_cfg(args):
    if USING_DASSL:
        from dassl.config import get_cfg_default as dassl_defaults

        cfg = extend_cfg(dassl_defaults())
    else:
        cfg = get_cfg_default()
    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    flags = {"DATASET.ROOT": args.root, "OUTPUT_DIR": args.output_dir, "RESUME": args.resume,
             "TRAINER.NAME": args.trainer, "MODEL.BACKBONE.NAME": args.backbone,
             "MODEL.BACKBONE.WEIGHTS": args.weights}
    cfg.merge_from_list([item for key, value in flags.items() if value for item in (key, value)])
    if args.seed >= 0:
        cfg.SEED = args.seed
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def setup_logging(output_dir: str) -> None:
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stdout), logging.FileHandler(Path(output_dir) / "log.txt")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers, force=True)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except (DataLayoutError, WeightsUnavailableError, FileNotFoundError, ValueError) as error:
        logging.error("error: %s", error)
        raise SystemExit(2) from None


def run(args):
    cfg = setup_cfg(args)
    setup_logging(cfg.OUTPUT_DIR)
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


if __name__ == "__main__":
    main()
