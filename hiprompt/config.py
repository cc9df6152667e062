"""The one configuration schema (yacs), with every default documented.

Each default that shapes a result names its source: "paper" (its text or equations),
"TaI-DPT" (its published configs and code, which the paper's setting follows), "Dassl"
(the toolbox's own default, as CoOp inherits it), "CoOp", or "measured" (a comparison run
in the toy world, reported in docs/results-toy.md); "this project" where none of them decides.

Order of precedence, as in the CoOp family: these defaults -> dataset YAML -> method YAML
-> command-line flags -> trailing `KEY VALUE` pairs. Unknown keys are errors.

`extend_cfg` adds this project's keys to any base config, so the same schema extends
Dassl's `get_cfg_default()` when Dassl is the runtime.
"""

import ast

from yacs.config import CfgNode as CN

from hiprompt.baselines.dualcoop import TRAIN_DATA
from hiprompt.choices import choices_text
from hiprompt.clip.backbone import ACTIVATIONS
from hiprompt.data.knowledge import KINDS, LABEL_POLICIES
from hiprompt.data.transforms import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, INTERPOLATIONS, RESIZE_MODES
from hiprompt.data.voc import DIFFICULT_POLICIES
from hiprompt.model.losses import ORDER_DIRECTIONS, RANK_REDUCTIONS
from hiprompt.model.prompt_learner import CLASS_TOKEN_POSITIONS, LEARNED_NAMES, PROMPT_ENCODINGS
from hiprompt.training.build import LR_SCHEDULERS, OPTIMIZERS, WARMUP_TYPES
from hiprompt.training.metrics import METRIC_CONVENTIONS
from hiprompt.training.protocol import PROTOCOLS


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
    cfg.INPUT.SIZE = (224, 224)  # paper (RN50 at 224 px)
    cfg.INPUT.INTERPOLATION = "bicubic"  # CLIP's preprocessing
    cfg.INPUT.PIXEL_MEAN = list(CLIP_PIXEL_MEAN)  # CLIP's preprocessing
    cfg.INPUT.PIXEL_STD = list(CLIP_PIXEL_STD)  # CLIP's preprocessing

    cfg.DATASET = CN()
    cfg.DATASET.ROOT = ""  # the data root (folder holding the test set)
    cfg.DATASET.NAME = ""  # the registered image test set: COCO, VOC2007, NUSWIDE, CustomMultiLabel

    cfg.DATALOADER = CN()
    cfg.DATALOADER.NUM_WORKERS = 4  # Dassl (speed only)
    cfg.DATALOADER.TRAIN_X = CN()
    # Text descriptions per step. The paper gives none; TaI-DPT trains on 512. Measured in the
    # toy world (10-epoch-equivalent schedule, seeds 1-3): 32 gave 97.92 mAP, 512 gave 95.84
    # (docs/results-toy.md, "What the changed defaults did").
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    cfg.DATALOADER.TEST = CN()
    cfg.DATALOADER.TEST.BATCH_SIZE = 64  # images per feature-extraction batch (speed only)

    cfg.OPTIM = CN()
    cfg.OPTIM.NAME = "sgd"  # OPTIMIZERS: sgd | adam | adamw (SGD: paper, TaI-DPT, CoOp)
    cfg.OPTIM.LR = 0.002  # paper
    cfg.OPTIM.WEIGHT_DECAY = 5e-4  # Dassl
    cfg.OPTIM.MOMENTUM = 0.9  # Dassl
    cfg.OPTIM.MAX_EPOCH = 10  # paper
    cfg.OPTIM.LR_SCHEDULER = "multi_step"  # LR_SCHEDULERS: multi_step | cosine | constant
    cfg.OPTIM.STEPSIZE = (2, 5)  # multi_step: epochs at which the lr is multiplied by GAMMA (paper)
    cfg.OPTIM.GAMMA = 0.1  # paper
    # Dassl's warm-up (its names and defaults): the first WARMUP_EPOCH epochs at WARMUP_CONS_LR
    # (constant) or rising to LR (linear, from WARMUP_MIN_LR), then the schedule above counted
    # from 0 (Dassl's default WARMUP_RECOUNT). 0 = none (paper, this project); TaI-DPT's and
    # DualCoOp's configs set one constant epoch at 1e-5.
    cfg.OPTIM.WARMUP_EPOCH = 0
    cfg.OPTIM.WARMUP_TYPE = "linear"  # WARMUP_TYPES: constant | linear
    cfg.OPTIM.WARMUP_CONS_LR = 1e-5
    cfg.OPTIM.WARMUP_MIN_LR = 1e-5

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
    cfg.MODEL.BACKBONE.NAME = "RN50"  # an open_clip model name, or `tiny` / `toy` (RN50: paper)

    cfg.TRAINER = CN()
    cfg.TRAINER.NAME = ""
    return cfg


def extend_cfg(cfg: CN) -> CN:
    """Add this project's keys (before any YAML is merged)."""
    cfg.MODEL.BACKBONE.WEIGHTS = "openai"  # open_clip tag, a local checkpoint path, or `random` (paper)
    # Text-tower MLP activation. auto: what the weights were trained with (QuickGELU for
    # OpenAI's: tag, TorchScript file or OpenAI-format state dict; a tag's own record
    # otherwise; a ViT state-dict file, which cannot tell, stops and asks; see
    # hiprompt/clip/backbone.py) | quickgelu | gelu
    cfg.MODEL.BACKBONE.ACTIVATION = "auto"
    # ResNet dense image features: add the attention pool's positional embedding to every
    # position before its value/output projections (DualCoOp) or not (TaI-DPT's dense forward)
    cfg.MODEL.BACKBONE.DENSE_POS_EMBED = True
    # ResNet global image feature: the attention pool with its positional embedding (CLIP's
    # own; this project) or without it (TaI-DPT's test-time forward; its configs set False)
    cfg.MODEL.BACKBONE.GLOBAL_POS_EMBED = True
    # ResNet dense features led by the attention pool's mean token (DualCoOp aggregates over
    # all HW + 1 positions; its configs set True) or the HW grid positions only (this project)
    cfg.MODEL.BACKBONE.DENSE_MEAN_TOKEN = False
    cfg.TEST.EVALUATOR = "MultiLabelEvaluator"  # (Dassl's default is single-label `Classification`)
    # Metric conventions (hiprompt/training/metrics.py): hiprompt (mAP over classes with a positive, tied
    # scores one threshold; CP/CR/CF1 and OP/OR/OF1 on the top-3) | peer (TaI-DPT's and
    # DualCoOp's code: every class in mAP, ties ranked by order; CP/CR/CF1, OP/OR/OF1 at TEST.THRESHOLD)
    cfg.TEST.METRICS = "hiprompt"
    cfg.TEST.THRESHOLD = 0.5  # peer metrics: a score above it is a prediction (DualCoOp: 0.5 on probabilities)
    # also write <OUTPUT_DIR>/scores_<split>.npz: every evaluated image's class scores and labels
    # (as TaI-DPT's TEST.SAVE_PREDS; scripts/tables/figure5.py reads them)
    cfg.TEST.SAVE_SCORES = False
    # Which epoch's prompts are reported (hiprompt/training/protocol.py): paper (the last epoch
    # on the whole test set: the paper, this project) | peer (TaI-DPT's and DualCoOp's code:
    # the first best epoch by the peers' mAP on TaI-DPT's every-10th (NUS-WIDE 20th, VOC2007
    # every) test image, or DualCoOp's whole test set, its COCO images without an annotation
    # left out). Resume-neutral with the rest of TEST: the selection reads the saved
    # checkpoints after training (DualCoOp on COCO images compares its training images itself).
    cfg.TEST.PROTOCOL = "paper"
    # The trainers build their own scheduler: Dassl's default `single_step` (STEPSIZE (-1,)) is
    # not one of theirs, so this project's schedule is the default on Dassl too.
    ours = _base_defaults().OPTIM
    cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.STEPSIZE = ours.LR_SCHEDULER, ours.STEPSIZE

    # square: resize without cropping (this project: a multi-label image keeps its borders) |
    # resize_crop: shorter side + centre crop (TaI-DPT)
    cfg.INPUT.TEST_RESIZE = "square"

    cfg.DATASET.TEST_SPLIT = "val2014"  # COCO: val2014 | val2017; VOC2007: test; NUS-WIDE: Test
    # COCO: keep images without any annotation (TaI-DPT's rule); DualCoOp under TEST.PROTOCOL peer
    # drops them whatever this says (its loader's rule; hiprompt/training/protocol.py)
    cfg.DATASET.KEEP_UNANNOTATED = True
    cfg.DATASET.VOC_DIFFICULT = "negative"  # DIFFICULT_POLICIES: negative | positive | ignore (negative: TaI-DPT)
    cfg.DATASET.ALLOW_MISSING_IMAGES = False  # evaluate only the listed images present on disk
    cfg.DATASET.CSV = ""  # CustomMultiLabel: CSV of `image,labels` (labels joined by |)
    cfg.DATASET.CLASSNAMES_FILE = ""  # CustomMultiLabel: optional class list, one per line
    # Training images (DualCoOp as published; the method itself never reads them): the split
    # of the same data set (COCO: train2014 | train2017) or, for CustomMultiLabel, a CSV of
    # `image,labels` under DATASET.ROOT. "" = none.
    cfg.DATASET.TRAIN_SPLIT = ""
    cfg.DATASET.TRAIN_CSV = ""

    # The text-only training set made by `llm_knowledge`.
    cfg.DATASET.TEXT = CN()
    cfg.DATASET.TEXT.NAME = "LLMKnowledgeText"
    cfg.DATASET.TEXT.DIR = ""  # the knowledge folder
    cfg.DATASET.TEXT.KIND = "all"  # coarse | fine | relation | all (or a comma list) (all: paper)
    # asked | found | both: which classes label a sentence (both: METHOD.md, the classes asked
    # about plus those named, as TaI-DPT labels captions by the names they contain)
    cfg.DATASET.TEXT.LABELS = "both"
    cfg.DATASET.TEXT.HOLDOUT = 0.0  # fraction of sentences kept out of training for a text-side check
    # Disk for the stored per-token description features (hiprompt/cache/text_features.py, about
    # N x mean tokens x D x 2 bytes); a corpus whose store would be larger is encoded batch by
    # batch during training instead, with the same losses. 0 = always on the fly (this project:
    # room for the paper's COCO corpus on RN50, 1.5M sentences x ~15 tokens x 1024 x 2 B ≈ 46 GB)
    cfg.DATASET.TEXT.FEATURE_BUDGET_GB = 64.0

    cfg.CACHE_DIR = ""  # feature caches; "" = $HIPROMPT_CACHE or ~/.cache/hiprompt

    hp = cfg.TRAINER.HIPROMPT = CN()
    # Context tokens per kind (Table 4; 16/8/4/4 of 32: paper). All-shared = CoOp; all-class =
    # CSC; all zero = hand-crafted.
    hp.N_CTX_SHARED = 16  # S: shared by all classes
    hp.N_CTX_COARSE = 8  # P-S #1: shared within a coarse (scene) group
    hp.N_CTX_FINE = 4  # P-S #2: shared within a fine group
    hp.N_CTX_CLASS = 4  # C-S: one class only
    hp.CTX_STD = 0.02  # random initialisation of the context vectors (CoOp)
    # A phrase whose k token embeddings start the LAST k context positions, so that it stands
    # right before the name as in the hand-crafted prompt; in every slot of those positions
    # (shared, group and class-specific slots start equal), both branches; the positions
    # before it keep the random start; "_" reads as a space. A phrase of more tokens than the
    # context is an error. "" = all random (CoOp's default, as in its rn50_ep50.yaml; its
    # *_ctxv1.yaml use "a photo of a"). CoOp's own behaviour (the context is the phrase, its
    # length the phrase's): N_CTX_SHARED k, the other counts 0 (CoOp counts words, this
    # project tokens: the same for "a photo of a").
    hp.CTX_INIT = ""
    # Where the class name stands among the context tokens (CoOp's CLASS_TOKEN_POSITION):
    # end | middle (the first M // 2 context tokens, the name, the rest: CoOp's split) | front
    # (the name, then the context) (end: CoOp's default, the paper's prompt). middle and front
    # are encoded with PROMPT_ENCODING truncated (the prefix tree needs the context first).
    hp.CLASS_TOKEN_POSITION = "end"
    hp.TEMPLATE = "a photo of a {}."  # hand-crafted prompt (zero-shot, order-loss anchor) (CoOp, TaI-DPT)
    # The name after the learned tokens: label (the class label Y_i, paper §3.3) | prompt (the
    # readable name of the hand-crafted prompts, e.g. "computer mouse" for "mouse") | taidpt
    # (TaI-DPT's: "motor bike", "aeroplane" for COCO's motorcycle, airplane; its rn50 config)
    hp.LEARNED_NAME = "label"
    hp.LOCAL_BRANCH = True  # Table 3: learn local prompts on per-token text features (paper)
    hp.ORDER_LOSS = True  # Table 3: anchor class similarities to the hand-crafted prompts (paper)
    hp.LAMBDA_ORDER = 0.2  # λ1 (paper)
    hp.ORDER_TEMP = 0.1  # softmax temperature turning class-similarity rows into distributions (this project)
    # hand_to_learned: KL(D_hand ‖ D_learned), what Eq. 13's KL(D^G, D^H) computes as PyTorch's
    # F.kl_div(log D^G, D^H) (the paper's code base) | learned_to_hand: KL(D_learned ‖ D_hand),
    # Eq. 13 read as KL(P ‖ Q). Chosen on a validation world: only hand_to_learned gives the
    # order loss the paper's gain (docs/results-toy.md "Where toy80 disagrees with the paper")
    hp.ORDER_DIRECTION = "hand_to_learned"
    hp.LAMBDA_FUSE = 0.65  # λ2: weight of the global score at inference (paper)
    hp.MARGIN = 1.0  # ranking-loss margin (paper)
    # sum: hinge summed over a sample's positive/negative pairs (paper Eq. 12; TaI-DPT's
    # ranking_loss), then averaged over samples | mean: averaged over the pairs first
    hp.RANK_REDUCTION = "sum"
    hp.LOGIT_SCALE = 4.0  # fixed scale on cosine scores in the ranking loss (TaI-DPT's value)
    hp.TAU_TEXT = 0.02  # softmax temperature over description tokens (TaI-DPT: 1/50)
    # the start-of-text token among the description tokens of the local text score: False
    # (this project: after start-of-text up to end-of-text) | True (TaI-DPT, which masks only
    # the padding; its configs set True)
    hp.TEXT_START_TOKEN = False
    # softmax temperature over image positions (TaI-DPT: 1/40 for COCO and VOC2007;
    # configs/datasets/nuswide.yaml sets its 1/4)
    hp.TAU_IMAGE = 0.025
    # auto | fp32 | bf16 (PRECISIONS): the prompt encoder's precision. bf16 runs it under
    # bf16 autocast (float32 master weights, gradients and losses) on any device; auto is
    # bf16 on CUDA, fp32 elsewhere (this project; TaI-DPT: fp32). Agreement: docs/training.md
    hp.PREC = "auto"
    # tree | truncated | full: how class prompts are encoded, all exact (tests/test_prompt_tree.py);
    # tree is the fastest (this project, measured: docs/benchmarks.md "Training at paper scale")
    hp.PROMPT_ENCODING = "tree"

    # DualCoOp (hiprompt/baselines/dualcoop.py); defaults from its code (utils/build_cfg.py, opts.py,
    # models/dualcoop.py, utils/asymmetric_loss.py)
    dc = cfg.TRAINER.DUALCOOP = CN()
    # images: as published, on the training images with partial labels (cached features of the
    # frozen image tower) | text: on the knowledge folder's sentences (the data-free setting)
    dc.TRAIN_DATA = "images"
    dc.N_CTX = 16  # context tokens of each of the positive and negative prompts (DualCoOp)
    dc.CSC = False  # class-specific contexts (DualCoOp's --csc; off by default)
    dc.CTX_STD = 0.02  # random initialisation (DualCoOp)
    dc.LABEL_PORTION = 1.0  # fraction of each image's labels kept, the rest hidden (DualCoOp's -pp)
    dc.SPATIAL_SCALE = 20.0  # scale of cosines in the region softmax and logits (DualCoOp: 20)
    dc.SCALE = 5.0  # scale of the aggregated logits (DualCoOp: 5)
    dc.GAMMA_NEG = 2.0  # asymmetric loss focusing of negatives (DualCoOp: 2)
    dc.GAMMA_POS = 1.0  # ... of positives (DualCoOp: 1)
    dc.CLIP = 0.05  # probability shift of negatives (DualCoOp: 0.05)
    dc.LOSS_WEIGHT = 1.0  # factor on the summed loss (DualCoOp's --loss_w; its README: 0.03 at -pp 0.5)
    return cfg


def get_cfg_default() -> CN:
    """The full schema for the built-in runtime."""
    return extend_cfg(_base_defaults())


# -- ranges and choices ----------------------------------------------------------------------
class ConfigError(ValueError):
    """Settings outside their documented range or choices."""


def _number(low=None, high=None, *, integer=False, low_open=False, high_open=False):
    """A rule: a number (an integer when `integer`) in the interval, ends open or closed."""
    kind = "an integer" if integer else "a number"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"

    def check(value):
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return False
        if value != value:  # NaN (YAML's .nan) is in no interval
            return False
        if low is not None and (value <= low if low_open else value < low):
            return False
        return high is None or (value < high if high_open else value <= high)

    return check, f"{kind} in {interval}"


def _choice(*choices):
    return (lambda value: value in choices), choices_text(choices)


def _each(rule, length=None):
    """A rule for a list whose every item obeys `rule` (and, given `length`, of that length)."""
    check, text = rule

    def check_all(value):
        return (isinstance(value, (list, tuple)) and len(value) > 0
                and (length is None or len(value) == length) and all(check(v) for v in value))

    return check_all, f"{length or 'one or more'} values, each {text}"


def _text_kinds():
    def check(value):
        return value == "all" or (isinstance(value, str) and {k.strip() for k in value.split(",")} <= set(KINDS))

    return check, f"all, or one or a comma list of {', '.join(KINDS)}"


PRECISIONS = ("auto", "fp32", "bf16")  # TRAINER.HIPROMPT.PREC (hiprompt.training.runtime.prompt_autocast)

# Every numeric setting's range and every choice setting's choices (documented above).
# INPUT.SIZE: at least one stride of the image towers (a ResNet CLIP downsamples 32x).
RULES = {
    "SEED": _number(integer=True),
    "INPUT.SIZE": _each(_number(32, integer=True), length=2),
    "INPUT.INTERPOLATION": _choice(*INTERPOLATIONS),
    "INPUT.PIXEL_MEAN": _each(_number(), length=3),
    "INPUT.PIXEL_STD": _each(_number(0, low_open=True), length=3),
    "INPUT.TEST_RESIZE": _choice(*RESIZE_MODES),
    "DATASET.VOC_DIFFICULT": _choice(*DIFFICULT_POLICIES),
    "DATASET.TEXT.KIND": _text_kinds(),
    "DATASET.TEXT.LABELS": _choice(*LABEL_POLICIES),
    "DATASET.TEXT.HOLDOUT": _number(0, 1, high_open=True),
    "DATALOADER.NUM_WORKERS": _number(0, integer=True),
    "DATALOADER.TRAIN_X.BATCH_SIZE": _number(1, integer=True),
    "DATALOADER.TEST.BATCH_SIZE": _number(1, integer=True),
    "OPTIM.NAME": _choice(*OPTIMIZERS),
    "OPTIM.LR": _number(0, low_open=True),
    "OPTIM.WEIGHT_DECAY": _number(0),
    "OPTIM.MOMENTUM": _number(0, 1),
    "OPTIM.MAX_EPOCH": _number(1, integer=True),
    "OPTIM.LR_SCHEDULER": _choice(*LR_SCHEDULERS),
    "OPTIM.STEPSIZE": _each(_number(1, integer=True)),
    "OPTIM.GAMMA": _number(0, 1, low_open=True),
    "OPTIM.WARMUP_EPOCH": _number(0, integer=True),
    "OPTIM.WARMUP_TYPE": _choice(*WARMUP_TYPES),
    "OPTIM.WARMUP_CONS_LR": _number(0, low_open=True),
    "OPTIM.WARMUP_MIN_LR": _number(0, low_open=True),

    "TRAIN.PRINT_FREQ": _number(1, integer=True),
    "TRAIN.CHECKPOINT_FREQ": _number(0, integer=True),
    "MODEL.BACKBONE.ACTIVATION": _choice(*ACTIVATIONS),
    "MODEL.BACKBONE.DENSE_POS_EMBED": _choice(True, False),
    "MODEL.BACKBONE.GLOBAL_POS_EMBED": _choice(True, False),
    "MODEL.BACKBONE.DENSE_MEAN_TOKEN": _choice(True, False),
    "TRAINER.HIPROMPT.N_CTX_SHARED": _number(0, integer=True),
    "TRAINER.HIPROMPT.N_CTX_COARSE": _number(0, integer=True),
    "TRAINER.HIPROMPT.N_CTX_FINE": _number(0, integer=True),
    "TRAINER.HIPROMPT.N_CTX_CLASS": _number(0, integer=True),
    "TRAINER.HIPROMPT.CTX_STD": _number(0),
    "TRAINER.HIPROMPT.TEMPLATE": ((lambda value: isinstance(value, str) and value.count("{}") == 1),
                                  "a text with one {} where the class name goes"),
    "TRAINER.HIPROMPT.LEARNED_NAME": _choice(*LEARNED_NAMES),
    "TRAINER.HIPROMPT.CTX_INIT": ((lambda value: isinstance(value, str)), "a phrase (\"\" = random start)"),
    "TRAINER.HIPROMPT.CLASS_TOKEN_POSITION": _choice(*CLASS_TOKEN_POSITIONS),
    "TRAINER.HIPROMPT.LAMBDA_ORDER": _number(0),
    "TRAINER.HIPROMPT.ORDER_TEMP": _number(0, low_open=True),
    "TRAINER.HIPROMPT.ORDER_DIRECTION": _choice(*ORDER_DIRECTIONS),
    "TRAINER.HIPROMPT.LAMBDA_FUSE": _number(0, 1),
    "TRAINER.HIPROMPT.MARGIN": _number(0),
    "TRAINER.HIPROMPT.RANK_REDUCTION": _choice(*RANK_REDUCTIONS),
    "TRAINER.HIPROMPT.LOGIT_SCALE": _number(0, low_open=True),
    "TRAINER.HIPROMPT.TAU_TEXT": _number(0, low_open=True),
    "TRAINER.HIPROMPT.TEXT_START_TOKEN": _choice(True, False),
    "TRAINER.HIPROMPT.TAU_IMAGE": _number(0, low_open=True),
    "TRAINER.HIPROMPT.PREC": _choice(*PRECISIONS),
    "TRAINER.HIPROMPT.PROMPT_ENCODING": _choice(*PROMPT_ENCODINGS),
    "DATASET.TEXT.FEATURE_BUDGET_GB": _number(0),
    "TEST.METRICS": _choice(*METRIC_CONVENTIONS),
    "TEST.THRESHOLD": _number(),
    "TEST.SAVE_SCORES": _choice(True, False),
    "TEST.PROTOCOL": _choice(*PROTOCOLS),
    "TRAINER.DUALCOOP.TRAIN_DATA": _choice(*TRAIN_DATA),
    "TRAINER.DUALCOOP.N_CTX": _number(1, integer=True),
    "TRAINER.DUALCOOP.CSC": _choice(True, False),
    "TRAINER.DUALCOOP.CTX_STD": _number(0),
    "TRAINER.DUALCOOP.LABEL_PORTION": _number(0, 1, low_open=True),
    "TRAINER.DUALCOOP.SPATIAL_SCALE": _number(0, low_open=True),
    "TRAINER.DUALCOOP.SCALE": _number(0, low_open=True),
    "TRAINER.DUALCOOP.GAMMA_NEG": _number(0),
    "TRAINER.DUALCOOP.GAMMA_POS": _number(0),
    "TRAINER.DUALCOOP.CLIP": _number(0, 1),
    "TRAINER.DUALCOOP.LOSS_WEIGHT": _number(0, low_open=True),
}


def _lookup(cfg: CN, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def validate_cfg(cfg: CN) -> None:
    """Check every setting of `RULES` (keys the config lacks are skipped: a Dassl config
    before `extend_cfg`); one `ConfigError` names each bad key, its value and what is expected."""
    problems = []
    for key, (check, expected) in RULES.items():
        try:
            value = _lookup(cfg, key)
        except KeyError:
            continue
        if not check(value):
            problems.append(f"{key}={value!r}: expected {expected}")
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems))


# -- what a resume compares ------------------------------------------------------------------
# Keys that cannot change the learned prompts. Resuming a run compares every other setting
# with the one its checkpoint recorded (hiprompt.training.checkpoint); a name ending in "." covers
# its whole node. OPTIM.MAX_EPOCH is compared with its own rule there (a run may be extended).
RESUME_NEUTRAL = (
    # where a run is written, how it is logged and computed
    "OUTPUT_DIR", "RESUME", "VERBOSE", "USE_CUDA", "CACHE_DIR", "DATALOADER.NUM_WORKERS",
    "TRAIN.PRINT_FREQ", "TRAIN.CHECKPOINT_FREQ", "DATASET.TEXT.FEATURE_BUDGET_GB",
    "TRAINER.HIPROMPT.PROMPT_ENCODING",
    # the evaluation on images (the test set's classes are compared on their own)
    "TEST.", "INPUT.", "DATALOADER.TEST.", "DATASET.ROOT", "DATASET.NAME", "DATASET.TEST_SPLIT",
    "DATASET.KEEP_UNANNOTATED", "DATASET.VOC_DIFFICULT", "DATASET.ALLOW_MISSING_IMAGES",
    "DATASET.CSV", "DATASET.CLASSNAMES_FILE", "MODEL.BACKBONE.DENSE_POS_EMBED",
    "MODEL.BACKBONE.GLOBAL_POS_EMBED", "MODEL.BACKBONE.DENSE_MEAN_TOKEN",
    "TRAINER.HIPROMPT.LAMBDA_FUSE", "TRAINER.HIPROMPT.TAU_IMAGE",
    # compared by content instead: the knowledge folder's hash, the backbone's identity
    # (architecture, weights digest, activation)
    "DATASET.TEXT.DIR", "MODEL.BACKBONE.NAME", "MODEL.BACKBONE.WEIGHTS", "MODEL.BACKBONE.ACTIVATION",
    # read by DualCoOp only, which compares them itself (training images by their list and
    # labels; hiprompt/baselines/dualcoop_training.py), so other trainers' runs do not depend on them
    "DATASET.TRAIN_SPLIT", "DATASET.TRAIN_CSV", "TRAINER.DUALCOOP.",
)


def result_settings(cfg: CN) -> dict:
    """Every setting not in `RESUME_NEUTRAL`, as {dotted key: value} (tuples as lists)."""
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = prefix + key
            if isinstance(value, CN):
                walk(value, name + ".")
            elif not any(name == k or (k.endswith(".") and name.startswith(k)) for k in RESUME_NEUTRAL):
                flat[name] = list(value) if isinstance(value, tuple) else value

    walk(cfg, "")
    return flat


def apply_settings(cfg: CN, settings: dict) -> CN:
    """The inverse of `result_settings`: set each {dotted key: value} of `settings` on `cfg`
    (in place; returns it), a list back to a tuple where the setting holds a tuple. A key
    that is no setting of `cfg` is a `ConfigError` naming it."""
    for key, value in settings.items():
        *parents, name = key.split(".")
        node = cfg
        for part in parents:
            node = node.get(part) if isinstance(node, CN) else None
        if not isinstance(node, CN) or name not in node or isinstance(node[name], CN):
            raise ConfigError(f"unknown setting {key}: not a key of hiprompt/config.py's schema")
        node[name] = tuple(value) if isinstance(node[name], tuple) and isinstance(value, list) else value
    return cfg


# -- merging ---------------------------------------------------------------------------------
def _widened(value, current):
    """`value` (a YAML value or a command-line string) as a float where the setting `current`
    is a float and `value` reads as an integer (`OPTIM.LR 1`), which yacs would refuse as a
    type mismatch; otherwise `value` unchanged, for yacs to decode and check."""
    decoded = value
    if isinstance(value, str):
        try:
            decoded = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return float(decoded) if isinstance(current, float) and type(decoded) is int else value


def _widen_node(other: CN, cfg: CN) -> None:
    """`_widened` over every setting of `other` that `cfg` has (in place)."""
    for key, value in other.items():
        if key not in cfg:
            continue
        if isinstance(value, CN) and isinstance(cfg[key], CN):
            _widen_node(value, cfg[key])
        else:
            other[key] = _widened(value, cfg[key])


def merge_file(cfg: CN, path) -> None:
    """yacs' `merge_from_file`, an integer accepted for a float setting (`LR: 1`)."""
    with open(path, "r") as handle:
        other = cfg.load_cfg(handle)
    _widen_node(other, cfg)
    cfg.merge_from_other_cfg(other)


def merge_overrides(cfg: CN, opts) -> None:
    """yacs' `merge_from_list` of trailing KEY VALUE pairs, an integer accepted for a float
    setting (`OPTIM.LR 1`); an odd count is a `ConfigError` saying so."""
    if len(opts) % 2:
        raise ConfigError(f"the KEY VALUE overrides are {len(opts)} items, an odd count: each KEY "
                          f"needs one VALUE (quote a value with spaces): {' '.join(opts)}")
    pairs = []
    for key, value in zip(opts[0::2], opts[1::2]):
        try:
            current = _lookup(cfg, key)
        except (KeyError, TypeError):
            current = None  # no such setting: yacs names the key
        pairs += [key, _widened(value, current)]
    cfg.merge_from_list(pairs)
