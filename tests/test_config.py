"""Settings are checked when the config is built: ranges and choices (`validate_cfg`),
unknown keys, unknown trainers and malformed YAML, each as one line and exit status 2."""

import subprocess
import sys

import pytest
from yacs.config import CfgNode

import train
from conftest import REPO
from hiprompt.config import RULES, ConfigError, get_cfg_default, validate_cfg

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


@pytest.mark.parametrize("trainer", ["HierarchicalCoOp", "ZeroshotCLIP"])
def test_shipped_configs_pass(trainer):
    for dataset in sorted((REPO / "configs" / "datasets").glob("*.yaml")):
        for method in sorted((REPO / "configs" / "trainers" / trainer).glob("*.yaml")):
            cfg = get_cfg_default()
            cfg.merge_from_file(str(dataset))
            cfg.merge_from_file(str(method))
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
