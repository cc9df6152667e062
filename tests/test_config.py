"""Settings are checked when the config is built: ranges and choices (`validate_cfg`),
unknown keys, unknown trainers and malformed YAML, each as one line and exit status 2."""

import math
import re
import subprocess
import sys

import pytest
from conftest import REPO
from yacs.config import CfgNode

import train
from hiprompt.config import RULES, ConfigError, get_cfg_default, merge_file, validate_cfg

TINY = ["--trainer", "HierarchicalCoOp", "--config-file", "configs/trainers/HierarchicalCoOp/tiny.yaml",
        "--dataset-config-file", "configs/datasets/custom.yaml"]


def error_line(argv, capsys) -> str:
    """The one error line of a train.py run that must stop with exit status 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    errors = [line.split(" ", 2)[2] for line in capsys.readouterr().out.splitlines() if " error: " in line]
    assert len(errors) == 1
    return errors[0]


def test_every_rule_names_a_key_of_the_schema_and_the_defaults_pass():
    cfg = get_cfg_default()
    for key in RULES:
        node = cfg
        for part in key.split("."):
            assert part in node, key
            node = node[part]
    validate_cfg(cfg)


TRAINERS = sorted(p.name for p in (REPO / "configs" / "trainers").iterdir() if p.is_dir())


def test_every_trainer_folder_is_checked():
    assert TRAINERS == ["CoOp", "DualCoOp", "HierarchicalCoOp", "TaIDPT", "ZeroshotCLIP"]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_shipped_configs_pass(trainer):
    """Every data-set YAML with every YAML of the trainer merges and passes the rules; each
    pair is counted, so an empty folder or a skipped file cannot pass unnoticed."""
    datasets = sorted((REPO / "configs" / "datasets").glob("*.yaml"))
    methods = sorted((REPO / "configs" / "trainers" / trainer).glob("*.yaml"))
    assert len(datasets) >= 4 and {"rn50.yaml", "tiny.yaml", "toy.yaml", "toy80.yaml"} <= {m.name for m in methods}
    checked = []
    for dataset in datasets:
        for method in methods:
            cfg = get_cfg_default()
            merge_file(cfg, dataset)
            merge_file(cfg, method)
            validate_cfg(cfg)  # raises ConfigError naming every bad key
            checked.append((dataset.name, method.name))
    assert len(checked) == len(datasets) * len(methods)


def test_a_shipped_config_with_a_bad_value_is_refused(tmp_path):
    """The check above can fail: the same merge of a method file with one value out of range."""
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs" / "trainers" / "HierarchicalCoOp" / "tiny.yaml").read_text()
                   + "TRAINER:\n  HIPROMPT:\n    ORDER_TEMP: 0.0\n")
    cfg = get_cfg_default()
    merge_file(cfg, bad)
    with pytest.raises(ConfigError, match=r"TRAINER.HIPROMPT.ORDER_TEMP=0.0: expected a number in \(0, inf\]"):
        validate_cfg(cfg)


# Every numeric rule, written out here: (kind, low, low closed?, high, high closed?, items)
# with items None for a single value or (the list length or None) for a list of such values.
INF = math.inf
NUMERIC = {
    "SEED": ("int", -INF, True, INF, True, None),
    "INPUT.SIZE": ("int", 32, True, INF, True, 2),
    "INPUT.PIXEL_MEAN": ("num", -INF, True, INF, True, 3),
    "INPUT.PIXEL_STD": ("num", 0, False, INF, True, 3),
    "DATASET.TEXT.HOLDOUT": ("num", 0, True, 1, False, None),
    "DATALOADER.NUM_WORKERS": ("int", 0, True, INF, True, None),
    "DATALOADER.TRAIN_X.BATCH_SIZE": ("int", 1, True, INF, True, None),
    "DATALOADER.TEST.BATCH_SIZE": ("int", 1, True, INF, True, None),
    "OPTIM.LR": ("num", 0, False, INF, True, None),
    "OPTIM.WEIGHT_DECAY": ("num", 0, True, INF, True, None),
    "OPTIM.MOMENTUM": ("num", 0, True, 1, True, None),
    "OPTIM.MAX_EPOCH": ("int", 1, True, INF, True, None),
    "OPTIM.STEPSIZE": ("int", 1, True, INF, True, "any"),
    "OPTIM.GAMMA": ("num", 0, False, 1, True, None),
    "OPTIM.WARMUP_EPOCH": ("int", 0, True, INF, True, None),
    "OPTIM.WARMUP_CONS_LR": ("num", 0, False, INF, True, None),
    "OPTIM.WARMUP_MIN_LR": ("num", 0, False, INF, True, None),
    "TRAIN.PRINT_FREQ": ("int", 1, True, INF, True, None),
    "TRAIN.CHECKPOINT_FREQ": ("int", 0, True, INF, True, None),  # 0: only the last epoch is saved
    "TRAINER.HIPROMPT.N_CTX_SHARED": ("int", 0, True, INF, True, None),
    "TRAINER.HIPROMPT.N_CTX_COARSE": ("int", 0, True, INF, True, None),
    "TRAINER.HIPROMPT.N_CTX_FINE": ("int", 0, True, INF, True, None),
    "TRAINER.HIPROMPT.N_CTX_CLASS": ("int", 0, True, INF, True, None),
    "TRAINER.HIPROMPT.CTX_STD": ("num", 0, True, INF, True, None),
    "TRAINER.HIPROMPT.LAMBDA_ORDER": ("num", 0, True, INF, True, None),
    "TRAINER.HIPROMPT.ORDER_TEMP": ("num", 0, False, INF, True, None),  # a divisor: zero refused
    "TRAINER.HIPROMPT.LAMBDA_FUSE": ("num", 0, True, 1, True, None),
    "TRAINER.HIPROMPT.MARGIN": ("num", 0, True, INF, True, None),
    "TRAINER.HIPROMPT.LOGIT_SCALE": ("num", 0, False, INF, True, None),
    "TRAINER.HIPROMPT.TAU_TEXT": ("num", 0, False, INF, True, None),
    "TRAINER.HIPROMPT.TAU_IMAGE": ("num", 0, False, INF, True, None),
    "DATASET.TEXT.FEATURE_BUDGET_GB": ("num", 0, True, INF, True, None),
    "TEST.THRESHOLD": ("num", -INF, True, INF, True, None),
    "TRAINER.DUALCOOP.N_CTX": ("int", 1, True, INF, True, None),
    "TRAINER.DUALCOOP.CTX_STD": ("num", 0, True, INF, True, None),
    "TRAINER.DUALCOOP.LABEL_PORTION": ("num", 0, False, 1, True, None),
    "TRAINER.DUALCOOP.SPATIAL_SCALE": ("num", 0, False, INF, True, None),
    "TRAINER.DUALCOOP.SCALE": ("num", 0, False, INF, True, None),
    "TRAINER.DUALCOOP.GAMMA_NEG": ("num", 0, True, INF, True, None),
    "TRAINER.DUALCOOP.GAMMA_POS": ("num", 0, True, INF, True, None),
    "TRAINER.DUALCOOP.CLIP": ("num", 0, True, 1, True, None),
    "TRAINER.DUALCOOP.LOSS_WEIGHT": ("num", 0, False, INF, True, None),
}


def _numeric_rule_keys():
    return sorted(k for k, (_, text) in RULES.items() if " number in " in text or " integer in " in text)


def test_every_numeric_rule_has_its_bounds_written_out_here():
    assert sorted(NUMERIC) == _numeric_rule_keys()


def _as_setting(key, item):
    """A whole setting whose (every) item is `item`."""
    kind, *_, items = NUMERIC[key]
    if items is None:
        return item
    return [item] * (1 if items == "any" else items) if key != "INPUT.SIZE" else [item, 224]


def _probes(kind, low, low_closed, high, high_closed):
    """(value, accepted?) at each finite bound, just inside and just outside it."""
    probes = []
    for bound, closed, inward in ((low, low_closed, INF), (high, high_closed, -INF)):
        if math.isinf(bound):
            continue
        if kind == "int":
            step = 1 if inward > 0 else -1
            probes += [(bound, closed), (bound + step, True), (bound - step, False)]
        else:
            probes += [(float(bound), closed), (math.nextafter(float(bound), inward), True),
                       (math.nextafter(float(bound), -inward), False)]
    return probes


@pytest.mark.parametrize("key", sorted(NUMERIC))
def test_numeric_rule_at_just_inside_and_just_outside_each_bound(key):
    kind, low, low_closed, high, high_closed, items = NUMERIC[key]
    check, text = RULES[key]
    probes = _probes(kind, low, low_closed, high, high_closed)
    if math.isinf(low) and math.isinf(high):
        probes = [(-10 ** 9, True), (0, True), (10 ** 9, True)]
    for value, accepted in probes:
        assert check(_as_setting(key, value)) is accepted, (key, value, accepted)
    # the message names the interval as written out here
    interval = (f"{'[' if low_closed else '('}{'-inf' if low == -INF else low}, "
                f"{'inf' if high == INF else high}{']' if high_closed else ')'}")
    assert text.endswith(interval), (text, interval)
    inside = next(v for v, ok in probes if ok)
    assert not check(_as_setting(key, float("nan")))  # NaN is in no interval
    assert not check(_as_setting(key, True))  # a bool is no number
    assert not check(_as_setting(key, str(inside)))
    if kind == "int":
        assert not check(_as_setting(key, float(inside)))  # 2.0 is no integer setting
    if items == "any":
        assert not check([])
    elif items is not None:
        assert not check([inside] * (items - 1)) and not check([inside] * (items + 1))


def test_a_zero_order_temperature_or_tau_is_refused_where_the_config_is_built():
    for key in ("TRAINER.HIPROMPT.ORDER_TEMP", "TRAINER.HIPROMPT.TAU_TEXT", "TRAINER.HIPROMPT.TAU_IMAGE"):
        cfg = get_cfg_default()
        *parents, name = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[name] = 0.0
        with pytest.raises(ConfigError, match=re.escape(f"{key}=0.0: expected a number in (0, inf]")):
            validate_cfg(cfg)


@pytest.mark.parametrize("key, value, expected", [
    ("TRAINER.HIPROMPT.LAMBDA_FUSE", "2.0", "TRAINER.HIPROMPT.LAMBDA_FUSE=2.0: expected a number in [0, 1]"),
    ("TRAINER.HIPROMPT.LAMBDA_FUSE", "-1.0", "TRAINER.HIPROMPT.LAMBDA_FUSE=-1.0: expected a number in [0, 1]"),
    ("DATASET.TEXT.HOLDOUT", "-0.5", "DATASET.TEXT.HOLDOUT=-0.5: expected a number in [0, 1)"),
    ("DATASET.TEXT.HOLDOUT", "1.5", "DATASET.TEXT.HOLDOUT=1.5: expected a number in [0, 1)"),
    ("OPTIM.MAX_EPOCH", "0", "OPTIM.MAX_EPOCH=0: expected an integer in [1, inf]"),
    ("INPUT.SIZE", "(0, 0)", "INPUT.SIZE=(0, 0): expected 2 values, each an integer in [32, inf]"),
    ("OPTIM.LR", "0.0", "OPTIM.LR=0.0: expected a number in (0, inf]"),
    ("OPTIM.NAME", "rmsprop", "OPTIM.NAME='rmsprop': expected one of sgd, adam, adamw"),
    ("OPTIM.LR_SCHEDULER", "step", "OPTIM.LR_SCHEDULER='step': expected one of multi_step, cosine, constant"),
    ("OPTIM.STEPSIZE", "(0, 5)", "OPTIM.STEPSIZE=(0, 5): expected one or more values, each an integer in [1, inf]"),
    ("TRAINER.HIPROMPT.PREC", "fp16", "TRAINER.HIPROMPT.PREC='fp16': expected one of auto, fp32, bf16"),
    ("TRAINER.HIPROMPT.N_CTX_CLASS", "-1", "TRAINER.HIPROMPT.N_CTX_CLASS=-1: expected an integer in [0, inf]"),
    ("TRAINER.HIPROMPT.TEMPLATE", "a photo", "TRAINER.HIPROMPT.TEMPLATE='a photo': expected a text with one {}"),
    ("DATASET.TEXT.KIND", "coarse,scene", "DATASET.TEXT.KIND='coarse,scene': expected all, or one or a comma list"),
    ("DATASET.TEXT.LABELS", "all", "DATASET.TEXT.LABELS='all': expected one of asked, found, both"),
    ("DATASET.VOC_DIFFICULT", "drop", "DATASET.VOC_DIFFICULT='drop': expected one of negative, positive, ignore"),
    ("INPUT.TEST_RESIZE", "crop", "INPUT.TEST_RESIZE='crop': expected one of square, resize_crop"),
    ("MODEL.BACKBONE.ACTIVATION", "relu", "MODEL.BACKBONE.ACTIVATION='relu': expected one of auto, quickgelu, gelu"),
    ("TRAINER.HIPROMPT.RANK_REDUCTION", "max", "TRAINER.HIPROMPT.RANK_REDUCTION='max': expected one of sum, mean"),
])
def test_out_of_range_setting_stops_before_anything_is_written(tmp_path, capsys, key, value, expected):
    out = tmp_path / "run"
    message = error_line(["--output-dir", str(out), *TINY, key, value], capsys)
    assert message.startswith(f"error: invalid settings: {expected}")
    assert not out.exists()


def test_every_bad_setting_is_named_at_once():
    cfg = get_cfg_default()
    cfg.OPTIM.MAX_EPOCH = 0
    cfg.TRAINER.HIPROMPT.LAMBDA_FUSE = 2.0
    with pytest.raises(ConfigError, match=r"OPTIM.MAX_EPOCH=0: .*; TRAINER.HIPROMPT.LAMBDA_FUSE=2.0: "):
        validate_cfg(cfg)


def test_a_dassl_style_config_without_this_projects_keys_is_checked_on_what_it_has():
    cfg = CfgNode({"OPTIM": CfgNode({"LR": -1.0})})
    with pytest.raises(ConfigError, match=r"OPTIM.LR=-1.0"):
        validate_cfg(cfg)


def test_unknown_key_unknown_trainer_and_malformed_yaml_are_one_line(tmp_path, capsys):
    out = ["--output-dir", str(tmp_path / "run")]
    assert error_line([*out, *TINY, "OPTIM.LRR", "0.1"], capsys) == (
        "error: the command line: Non-existent key: OPTIM.LRR (the keys are documented in hiprompt/config.py)")
    typo = tmp_path / "typo.yaml"
    typo.write_text("OPTIM:\n  LRR: 0.1\n")
    assert error_line([*out, "--config-file", str(typo)], capsys) == (
        f"error: {typo}: Non-existent config key: OPTIM.LRR (the keys are documented in hiprompt/config.py)")

    foo = ["--trainer", "Foo", "--dataset-config-file", "configs/datasets/custom.yaml"]
    assert error_line([*out, *foo], capsys) == (
        "error: TRAINER.NAME (--trainer)='Foo' is not registered; registered: CoOp, DualCoOp, HierarchicalCoOp, TaIDPT, ZeroshotCLIP")
    assert not (tmp_path / "run").exists()  # refused before the run folder or its log.txt is made
    coop = ["--trainer", "CoOp", "--dataset-config-file", "configs/datasets/custom.yaml",
            "--config-file", "configs/trainers/CoOp/tiny.yaml", "TRAINER.HIPROMPT.N_CTX_COARSE", "4"]
    assert error_line([*out, *coop], capsys).startswith(
        "error: CoOp: TRAINER.HIPROMPT.N_CTX_COARSE=4 and N_CTX_FINE=0 must be 0")
    assert not (tmp_path / "run").exists()  # a trainer's own check also runs before the folder is made

    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  LR: 0.1\n   NAME: sgd\n")
    assert error_line([*out, "--config-file", str(bad)], capsys) == (
        f"error: {bad}, line 3, column 8: not valid YAML (mapping values are not allowed here)")

    listed = tmp_path / "list.yaml"
    listed.write_text("- OPTIM.LR\n- 0.1\n")
    assert error_line([*out, "--config-file", str(listed)], capsys) == (
        f"error: {listed}: expected a mapping of settings (KEY: value) at the top level")

    assert error_line([*out, *TINY, "OPTIM.LR", "0.1", "OPTIM.NAME"], capsys) == (
        "error: the command line: the KEY VALUE overrides are 3 items, an odd count: each KEY needs one VALUE "
        "(quote a value with spaces): OPTIM.LR 0.1 OPTIM.NAME")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("late", [["--eval-only"], ["--seed", "2"], ["--seed=2"], ["--eval-only", "--seed", "2"]])
def test_flags_after_the_overrides_are_named_with_where_they_go(tmp_path, capsys, late):
    out = tmp_path / "run"
    message = error_line(["--output-dir", str(out), *TINY, "OPTIM.LR", "0.1", *late], capsys)
    assert message == (f"error: the command line: {late[0]} comes after the KEY VALUE overrides; put every flag "
                       "before them (as in CoOp's train.py, all from the first KEY on is read as KEY VALUE pairs)")
    assert not out.exists()


def test_an_integer_is_accepted_for_a_float_setting_but_not_the_reverse(tmp_path, capsys):
    method = tmp_path / "method.yaml"
    method.write_text("OPTIM:\n  LR: 1\n  MOMENTUM: 0\nTEST:\n  THRESHOLD: '2'\n")
    args = train.parse_args(["--output-dir", str(tmp_path / "run"), *TINY, "--config-file", str(method),
                             "TRAINER.HIPROMPT.LAMBDA_FUSE", "1", "DATASET.TEXT.FEATURE_BUDGET_GB", "3"])
    cfg = train.setup_cfg(args)
    settings = {"OPTIM.LR": cfg.OPTIM.LR, "OPTIM.MOMENTUM": cfg.OPTIM.MOMENTUM, "TEST.THRESHOLD": cfg.TEST.THRESHOLD,
                "TRAINER.HIPROMPT.LAMBDA_FUSE": cfg.TRAINER.HIPROMPT.LAMBDA_FUSE,
                "DATASET.TEXT.FEATURE_BUDGET_GB": cfg.DATASET.TEXT.FEATURE_BUDGET_GB}
    assert settings == {"OPTIM.LR": 1.0, "OPTIM.MOMENTUM": 0.0, "TEST.THRESHOLD": 2.0,
                        "TRAINER.HIPROMPT.LAMBDA_FUSE": 1.0, "DATASET.TEXT.FEATURE_BUDGET_GB": 3.0}
    assert all(type(value) is float for value in settings.values())
    assert cfg.OPTIM.MAX_EPOCH == 10 and type(cfg.OPTIM.MAX_EPOCH) is int

    message = error_line(["--output-dir", str(tmp_path / "run"), *TINY, "OPTIM.MAX_EPOCH", "2.5"], capsys)
    assert message.startswith("error: the command line: Type mismatch") and "OPTIM.MAX_EPOCH" in message
    assert error_line(["--output-dir", str(tmp_path / "run"), *TINY, "OPTIM.LR", "True"], capsys).startswith(
        "error: the command line: Type mismatch")


def test_train_py_exits_2_without_traceback_unless_debug(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM: [\n")
    command = [sys.executable, "train.py", "--output-dir", str(tmp_path / "run"), "--config-file", str(bad)]
    plain = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2
    assert "Traceback" not in plain.stdout + plain.stderr
    errors = [line.split(" ", 2)[2] for line in plain.stdout.splitlines() if " error: " in line]
    assert errors == [f"error: {bad}, line 2, column 1: not valid YAML (while parsing a flow node: "
                      "expected the node content, but found '<stream end>')"]
    debug = subprocess.run(command + ["--debug"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


# Every default as its source gives it (the comments in hiprompt/config.py name the same sources)
DOCUMENTED_DEFAULTS = {
    # the paper (§4.1 and Table 4): SGD, lr 0.002, 10 epochs, lr x 0.1 at epochs 2 and 5, RN50 at
    # 224 px, 16/8/4/4 context tokens of 32, λ1 = 0.2, λ2 = 0.65, margin 1, both branches and the order loss
    "OPTIM.NAME": "sgd", "OPTIM.LR": 0.002, "OPTIM.MAX_EPOCH": 10, "OPTIM.LR_SCHEDULER": "multi_step",
    "OPTIM.STEPSIZE": (2, 5), "OPTIM.GAMMA": 0.1, "MODEL.BACKBONE.NAME": "RN50", "MODEL.BACKBONE.WEIGHTS": "openai",
    "INPUT.SIZE": (224, 224), "TRAINER.HIPROMPT.N_CTX_SHARED": 16, "TRAINER.HIPROMPT.N_CTX_COARSE": 8,
    "TRAINER.HIPROMPT.N_CTX_FINE": 4, "TRAINER.HIPROMPT.N_CTX_CLASS": 4, "TRAINER.HIPROMPT.LAMBDA_ORDER": 0.2,
    "TRAINER.HIPROMPT.LAMBDA_FUSE": 0.65, "TRAINER.HIPROMPT.MARGIN": 1.0, "TRAINER.HIPROMPT.LOCAL_BRANCH": True,
    "TRAINER.HIPROMPT.ORDER_LOSS": True, "TRAINER.HIPROMPT.ORDER_DIRECTION": "hand_to_learned",
    "TRAINER.HIPROMPT.RANK_REDUCTION": "sum", "TRAINER.HIPROMPT.LEARNED_NAME": "label",
    "DATASET.TEXT.KIND": "all", "TEST.PROTOCOL": "paper",
    # TaI-DPT (its configs and code): logit scale 4, τ_text 1/50, τ_image 1/40, the template, the
    # COCO split and rules, VOC's difficult objects negative
    "TRAINER.HIPROMPT.LOGIT_SCALE": 4.0, "TRAINER.HIPROMPT.TAU_TEXT": 1 / 50, "TRAINER.HIPROMPT.TAU_IMAGE": 1 / 40,
    "TRAINER.HIPROMPT.TEMPLATE": "a photo of a {}.", "DATASET.TEST_SPLIT": "val2014",
    "DATASET.KEEP_UNANNOTATED": True, "DATASET.VOC_DIFFICULT": "negative",
    # Dassl (CoOp inherits them): weight decay, momentum, the warm-up's names and values, workers
    "OPTIM.WEIGHT_DECAY": 5e-4, "OPTIM.MOMENTUM": 0.9, "OPTIM.WARMUP_EPOCH": 0, "OPTIM.WARMUP_TYPE": "linear",
    "OPTIM.WARMUP_CONS_LR": 1e-5, "OPTIM.WARMUP_MIN_LR": 1e-5, "DATALOADER.NUM_WORKERS": 4, "VERSION": 1,
    "OUTPUT_DIR": "./output", "RESUME": "", "SEED": -1, "USE_CUDA": True, "VERBOSE": True, "DATASET.ROOT": "",
    "DATASET.NAME": "", "TEST.NO_TEST": False, "TEST.SPLIT": "test", "TEST.FINAL_MODEL": "last_step",
    "MODEL.INIT_WEIGHTS": "", "TRAINER.NAME": "", "INPUT.INTERPOLATION": "bicubic",
    # CoOp: the context's random start and its options' defaults
    "TRAINER.HIPROMPT.CTX_STD": 0.02, "TRAINER.HIPROMPT.CTX_INIT": "", "TRAINER.HIPROMPT.CLASS_TOKEN_POSITION": "end",
    # DualCoOp (its code: utils/build_cfg.py, opts.py, models/dualcoop.py, utils/asymmetric_loss.py)
    "TRAINER.DUALCOOP.TRAIN_DATA": "images", "TRAINER.DUALCOOP.N_CTX": 16, "TRAINER.DUALCOOP.CSC": False,
    "TRAINER.DUALCOOP.CTX_STD": 0.02, "TRAINER.DUALCOOP.LABEL_PORTION": 1.0, "TRAINER.DUALCOOP.SPATIAL_SCALE": 20.0,
    "TRAINER.DUALCOOP.SCALE": 5.0, "TRAINER.DUALCOOP.GAMMA_NEG": 2.0, "TRAINER.DUALCOOP.GAMMA_POS": 1.0,
    "TRAINER.DUALCOOP.CLIP": 0.05, "TRAINER.DUALCOOP.LOSS_WEIGHT": 1.0, "TEST.THRESHOLD": 0.5,
    # measured in the toy world (docs/results-toy.md): 32 descriptions per step
    "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
    # this project's own choices, each with its reason in hiprompt/config.py
    "TRAINER.HIPROMPT.ORDER_TEMP": 0.1, "TRAINER.HIPROMPT.TEXT_START_TOKEN": False, "TRAINER.HIPROMPT.PREC": "auto",
    "TRAINER.HIPROMPT.PROMPT_ENCODING": "tree", "MODEL.BACKBONE.ACTIVATION": "auto",
    "MODEL.BACKBONE.DENSE_POS_EMBED": True, "MODEL.BACKBONE.GLOBAL_POS_EMBED": True,
    "MODEL.BACKBONE.DENSE_MEAN_TOKEN": False, "TEST.EVALUATOR": "MultiLabelEvaluator", "TEST.METRICS": "hiprompt",
    "TEST.SAVE_SCORES": False, "INPUT.TEST_RESIZE": "square", "DATASET.ALLOW_MISSING_IMAGES": False,
    "DATASET.CSV": "", "DATASET.CLASSNAMES_FILE": "", "DATASET.TRAIN_SPLIT": "", "DATASET.TRAIN_CSV": "",
    "DATASET.TEXT.NAME": "LLMKnowledgeText", "DATASET.TEXT.DIR": "", "DATASET.TEXT.LABELS": "both",
    "DATASET.TEXT.HOLDOUT": 0.0, "DATASET.TEXT.FEATURE_BUDGET_GB": 64.0, "DATALOADER.TEST.BATCH_SIZE": 64,
    "TRAIN.PRINT_FREQ": 20, "TRAIN.CHECKPOINT_FREQ": 1, "CACHE_DIR": "",
}


def _lookup(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("key", sorted(DOCUMENTED_DEFAULTS))
def test_every_default_is_the_documented_one(key):
    """Value and type (yacs refuses a value of another type on merge)."""
    value, expected = _lookup(get_cfg_default(), key), DOCUMENTED_DEFAULTS[key]
    assert value == expected and type(value) is type(expected), (value, expected)


def test_pixel_statistics_are_clips_own():
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    cfg = get_cfg_default()
    assert cfg.INPUT.PIXEL_MEAN == list(OPENAI_DATASET_MEAN) and cfg.INPUT.PIXEL_STD == list(OPENAI_DATASET_STD)


def test_the_project_schedule_and_evaluator_replace_dassls_defaults():
    """On a Dassl base config (single_step at (-1,), the single-label evaluator) `extend_cfg`
    sets this project's schedule and the multi-label evaluator."""
    from hiprompt.config import _base_defaults, extend_cfg

    dassl = _base_defaults()
    dassl.OPTIM.LR_SCHEDULER, dassl.OPTIM.STEPSIZE, dassl.TEST.EVALUATOR = "single_step", (-1,), "Classification"
    cfg = extend_cfg(dassl)
    assert (cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.STEPSIZE, cfg.TEST.EVALUATOR) == ("multi_step", (2, 5),
                                                                                "MultiLabelEvaluator")


# -- the rule builders themselves (RULES is built once at import; these build rules afresh) ----
@pytest.mark.parametrize("args, kwargs, text, inside, outside", [
    ((0, 1), {"high_open": True}, "a number in [0, 1)", [0, 0.5, 0.999], [1, -0.001, True, "0.5", None, math.nan]),
    ((0,), {"low_open": True}, "a number in (0, inf]", [1e-9, 1e300, 3], [0, -1, math.nan]),
    ((1,), {"integer": True}, "an integer in [1, inf]", [1, 5], [0, 1.0, True, 2.5]),
    ((), {}, "a number in [-inf, inf]", [-1e9, 0, 2.5], [math.nan, "x", None, False]),
    ((None, 5), {"integer": True}, "an integer in [-inf, 5]", [-3, 5], [6, 5.0]),
    ((-1, 2), {"low_open": True, "high_open": True}, "a number in (-1, 2)", [-0.999, 0, 1.999], [-1, 2, 2.001]),
    ((-1, 2), {}, "a number in [-1, 2]", [-1, 2], [-1.001, 2.001]),
])
def test_number_rule(args, kwargs, text, inside, outside):
    from hiprompt.config import _number

    check, written = _number(*args, **kwargs)
    assert written == text
    assert [check(v) for v in inside] == [True] * len(inside)
    assert [check(v) for v in outside] == [False] * len(outside)


def test_list_choice_and_kind_rules():
    from hiprompt.config import _choice, _each, _number, _text_kinds
    from hiprompt.data.knowledge import KINDS

    check, text = _each(_number(0, low_open=True), length=3)
    assert text == "3 values, each a number in (0, inf]"
    assert check([1, 2, 3]) and check((0.5, 1, 2))
    assert not any(check(v) for v in ([1, 2], [1, 2, 3, 4], [1, 2, 0], "abc", [], 5, None))
    check, text = _each(_number())
    assert text == "one or more values, each a number in [-inf, inf]"
    assert check([1]) and check([1, 2, 3, 4]) and not check([]) and not check(["a"])

    check, text = _choice("a", "b")
    assert text == "one of a, b" and check("a") and check("b") and not check("c") and not check(None)

    check, text = _text_kinds()
    assert text == f"all, or one or a comma list of {', '.join(KINDS)}"
    assert all(check(v) for v in ("all", "coarse", "coarse, fine", "relation,caption", ",".join(KINDS)))
    assert not any(check(v) for v in ("ALL", "nope", "coarse,nope", "coarse;fine", 3, None, ""))


def test_result_settings_are_every_setting_outside_the_neutral_ones():
    """Written out independently: walk the schema, leave out a key listed in RESUME_NEUTRAL or
    under a listed node ("TEST."), tuples as lists."""
    from yacs.config import CfgNode as CN

    from hiprompt.config import RESUME_NEUTRAL, result_settings

    cfg = get_cfg_default()
    expected = {}
    stack = [("", cfg)]
    while stack:
        prefix, node = stack.pop()
        for key, value in node.items():
            if isinstance(value, CN):
                stack.append((f"{prefix}{key}.", value))
                continue
            name = prefix + key
            neutral = name in RESUME_NEUTRAL or any(k.endswith(".") and name.startswith(k) for k in RESUME_NEUTRAL)
            if not neutral:
                expected[name] = list(value) if isinstance(value, tuple) else value
    settings = result_settings(cfg)
    assert settings == expected
    assert settings["OPTIM.STEPSIZE"] == [2, 5] and settings["TRAINER.HIPROMPT.LAMBDA_ORDER"] == 0.2
    assert not {"OUTPUT_DIR", "TEST.METRICS", "INPUT.SIZE", "TRAINER.HIPROMPT.LAMBDA_FUSE"} & set(settings)


def test_apply_settings_sets_each_key_and_refuses_what_is_no_setting():
    from hiprompt.config import apply_settings

    cfg = apply_settings(get_cfg_default(), {"OPTIM.STEPSIZE": [3, 7], "OPTIM.LR": 0.5, "SEED": 4,
                                             "TRAINER.HIPROMPT.TEMPLATE": "{}."})
    assert cfg.OPTIM.STEPSIZE == (3, 7) and cfg.OPTIM.LR == 0.5 and cfg.SEED == 4
    assert cfg.TRAINER.HIPROMPT.TEMPLATE == "{}." and cfg.INPUT.PIXEL_MEAN == get_cfg_default().INPUT.PIXEL_MEAN
    assert apply_settings(get_cfg_default(), {"INPUT.PIXEL_MEAN": [0.5, 0.5, 0.5]}).INPUT.PIXEL_MEAN == [0.5] * 3
    for key in ("OPTIM.NOPE", "NOPE.LR", "OPTIM", "OPTIM.LR.X", "OPTIM.LR.X.Y", "TRAINER.HIPROMPT"):
        with pytest.raises(ConfigError) as error:
            apply_settings(get_cfg_default(), {key: 1})
        assert str(error.value) == f"unknown setting {key}: not a key of hiprompt/config.py's schema"


def test_a_scalar_for_a_whole_node_is_refused_by_yacs(tmp_path):
    (tmp_path / "bad.yaml").write_text("OPTIM: 3\n")
    with pytest.raises(ValueError, match=r"(?s)Type mismatch .* for config key: OPTIM$"):
        merge_file(get_cfg_default(), tmp_path / "bad.yaml")
