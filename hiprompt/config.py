"""The one configuration schema (yacs), with every default documented.

Order of precedence, as in the CoOp family: these defaults -> dataset YAML -> method YAML
-> command-line flags -> trailing `KEY VALUE` pairs. Unknown keys are errors.

`extend_cfg` adds this project's keys to any base config, so the same schema extends
Dassl's `get_cfg_default()` when Dassl is the runtime.
"""

from yacs.config import CfgNode as CN

# OpenAI CLIP's input normalisation.
CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)


def _base_defaults() -> CN:
    """The subset of Dassl's defaults that this project reads (same names, same meaning)."""
    cfg = CN()
    cfg.VERSION = 1
    cfg.OUTPUT_DIR = "./output"  # where logs, checkpoints and results of a run go
    cfg.RESUME = ""  # a run folder to resume from ("" = resume OUTPUT_DIR if it holds a checkpoint)
    cfg.SEED = -1  # < 0: no fixed seed
    cfg.USE_CUDA = True  # use CUDA when available
    cfg.VERBOSE = True

    cfg.INPUT = CN()
    cfg.INPUT.SIZE = (224, 224)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.PIXEL_MEAN = list(CLIP_PIXEL_MEAN)
    cfg.INPUT.PIXEL_STD = list(CLIP_PIXEL_STD)

    cfg.DATASET = CN()
    cfg.DATASET.ROOT = ""  # the data root (folder holding the test set)
    cfg.DATASET.NAME = ""  # the registered image test set: COCO, VOC2007, NUSWIDE, CustomMultiLabel

    cfg.DATALOADER = CN()
    cfg.DATALOADER.NUM_WORKERS = 4
    cfg.DATALOADER.TRAIN_X = CN()
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 32  # text descriptions per step
    cfg.DATALOADER.TEST = CN()
    cfg.DATALOADER.TEST.BATCH_SIZE = 64  # images per feature-extraction batch

    cfg.OPTIM = CN()
    cfg.OPTIM.NAME = "sgd"  # sgd | adam | adamw
    cfg.OPTIM.LR = 0.002  # paper
    cfg.OPTIM.WEIGHT_DECAY = 5e-4
    cfg.OPTIM.MOMENTUM = 0.9
    cfg.OPTIM.MAX_EPOCH = 10  # paper
    cfg.OPTIM.LR_SCHEDULER = "multi_step"  # multi_step | cosine | constant
    cfg.OPTIM.STEPSIZE = (2, 5)  # multi_step: epochs at which the lr is multiplied by GAMMA (paper)
    cfg.OPTIM.GAMMA = 0.1  # paper

    cfg.TRAIN = CN()
    cfg.TRAIN.PRINT_FREQ = 20  # log every N steps
    cfg.TRAIN.CHECKPOINT_FREQ = 1  # save a checkpoint every N epochs (the last is always saved)

    cfg.TEST = CN()
    cfg.TEST.EVALUATOR = "MultiLabelEvaluator"
    cfg.TEST.NO_TEST = False  # skip evaluation after training
    cfg.TEST.SPLIT = "test"
    cfg.TEST.FINAL_MODEL = "last_step"

    cfg.MODEL = CN()
    cfg.MODEL.INIT_WEIGHTS = ""
    cfg.MODEL.BACKBONE = CN()
    cfg.MODEL.BACKBONE.NAME = "RN50"  # an open_clip model name, or `tiny` / `toy`

    cfg.TRAINER = CN()
    cfg.TRAINER.NAME = ""
    return cfg


def extend_cfg(cfg: CN) -> CN:
    """Add this project's keys (before any YAML is merged)."""
    cfg.MODEL.BACKBONE.WEIGHTS = "openai"  # open_clip tag, a local checkpoint path, or `random`
    cfg.TEST.EVALUATOR = "MultiLabelEvaluator"  # (Dassl's default is single-label `Classification`)

    cfg.INPUT.TEST_RESIZE = "square"  # square: resize without cropping | resize_crop: shorter side + centre crop

    cfg.DATASET.TEST_SPLIT = "val2014"  # COCO: val2014 | val2017; VOC2007: test; NUS-WIDE: Test
    cfg.DATASET.KEEP_UNANNOTATED = True  # COCO: keep images without any annotation (TaI-DPT's rule)
    cfg.DATASET.VOC_DIFFICULT = "negative"  # negative | positive | ignore
    cfg.DATASET.ALLOW_MISSING_IMAGES = False  # evaluate only the listed images present on disk
    cfg.DATASET.CSV = ""  # CustomMultiLabel: CSV of `image,labels` (labels joined by |)
    cfg.DATASET.CLASSNAMES_FILE = ""  # CustomMultiLabel: optional class list, one per line

    # The text-only training set made by `llm_knowledge`.
    cfg.DATASET.TEXT = CN()
    cfg.DATASET.TEXT.NAME = "LLMKnowledgeText"
    cfg.DATASET.TEXT.DIR = ""  # the knowledge folder
    cfg.DATASET.TEXT.KIND = "all"  # coarse | fine | relation | all (or a comma list)
    cfg.DATASET.TEXT.LABELS = "both"  # asked | found | both: which classes label a sentence
    cfg.DATASET.TEXT.HOLDOUT = 0.0  # fraction of sentences kept out of training for a text-side check

    cfg.CACHE_DIR = ""  # feature caches; "" = $HIPROMPT_CACHE or ~/.cache/hiprompt

    hp = cfg.TRAINER.HIPROMPT = CN()
    # Context tokens per kind (Table 4). All-shared = CoOp; all-class = CSC; all zero = hand-crafted.
    hp.N_CTX_SHARED = 16  # S: shared by all classes
    hp.N_CTX_COARSE = 8  # P-S #1: shared within a coarse (scene) group
    hp.N_CTX_FINE = 4  # P-S #2: shared within a fine group
    hp.N_CTX_CLASS = 4  # C-S: one class only
    hp.CTX_STD = 0.02  # random initialisation of the context vectors
    hp.TEMPLATE = "a photo of a {}."  # hand-crafted prompt (zero-shot, order-loss anchor)
    hp.LOCAL_BRANCH = True  # Table 3: learn local prompts on per-token text features
    hp.ORDER_LOSS = True  # Table 3: anchor class similarities to the hand-crafted prompts
    hp.LAMBDA_ORDER = 0.2  # λ1 (paper)
    hp.ORDER_TEMP = 0.1  # softmax temperature turning class-similarity rows into distributions
    hp.LAMBDA_FUSE = 0.65  # λ2: weight of the global score at inference (paper)
    hp.MARGIN = 1.0  # ranking-loss margin (paper)
    hp.LOGIT_SCALE = 4.0  # fixed scale on cosine scores in the ranking loss (TaI-DPT's value)
    hp.TAU_TEXT = 0.02  # softmax temperature over description tokens (TaI-DPT: 1/50)
    hp.TAU_IMAGE = 0.025  # softmax temperature over image positions (TaI-DPT: 1/40; NUS-WIDE 1/4)
    hp.PREC = "fp32"  # fp32 | bf16 (autocast, CUDA only)
    return cfg


def get_cfg_default() -> CN:
    """The full schema for the built-in runtime."""
    return extend_cfg(_base_defaults())
