"""The main job's token composition and run-folder name (`hiprompt/training/runs.py`), against
values worked out by hand from the README's rule (N/2, N/4, N/8, the rest; the folder
`<backbone>_nctx<N>_<S-P1-P2-C>` plus the overrides), and the scripts that ask it."""

import os
import stat
import subprocess
import sys

import pytest
from conftest import REPO

from hiprompt.training import runs


@pytest.mark.parametrize("n, expected", [
    (32, (16, 8, 4, 4)),  # the paper's 16/8/4/4
    (16, (8, 4, 2, 2)),
    (8, (4, 2, 1, 1)),
    (7, (3, 1, 0, 3)),    # 7/2 = 3, 7/4 = 1, 7/8 = 0, rest 7 - 4 = 3
    (13, (6, 3, 1, 3)),
    (1, (0, 0, 0, 1)),
    (0, (0, 0, 0, 0)),
])
def test_default_split_halves_quarters_eighths_and_the_rest(n, expected):
    assert runs.split_context(n) == expected
    assert runs.composition(n) == expected
    assert runs.composition(n, "") == expected  # COMPOSITION set but empty: as unset


def test_a_given_composition_is_used_when_it_adds_up():
    assert runs.composition(32, "0,0,0,32") == (0, 0, 0, 32)
    assert runs.composition(32, "32,0,0,0") == (32, 0, 0, 0)
    assert runs.composition(10, "1,2,3,4") == (1, 2, 3, 4)


@pytest.mark.parametrize("spec", ["16,8,4", "16,8,4,4,0", "16, 8,4,4", "16,08,4,4", "a,b,c,d", "16;8;4;4", "-1,17,8,8"])
def test_a_malformed_composition_names_composition_and_what_was_expected(spec):
    with pytest.raises(runs.RunSpecError) as error:
        runs.composition(32, spec)
    assert str(error.value) == (f"COMPOSITION='{spec}': expected four whole numbers S,P1,P2,C (tokens shared, "
                                "per coarse group, per fine group, per class) adding up to NCTX, e.g. 16,8,4,4")


def test_a_composition_that_does_not_add_up_is_refused():
    with pytest.raises(runs.RunSpecError, match="^COMPOSITION=16,8,4,5 does not add up to NCTX=32$"):
        runs.composition(32, "16,8,4,5")


@pytest.mark.parametrize("text", ["abc", "032", "", "3 ", "-4", "3.0"])
def test_nctx_must_be_a_whole_number(text):
    with pytest.raises(runs.RunSpecError) as error:
        runs.context_count(text)
    assert str(error.value) == f"NCTX='{text}': expected a whole number of context tokens, e.g. 32"
    assert runs.context_count("32") == 32 and runs.context_count("0") == 0


def test_run_names_as_the_readme_writes_them():
    assert runs.run_name("rn50", 32, (16, 8, 4, 4)) == "rn50_nctx32_16-8-4-4"
    # README: bash scripts/main.sh coco rn50 32 TRAINER.HIPROMPT.ORDER_LOSS False
    assert (runs.run_name("rn50", 32, (16, 8, 4, 4), ["TRAINER.HIPROMPT.ORDER_LOSS", "False"])
            == "rn50_nctx32_16-8-4-4_TRAINER.HIPROMPT.ORDER_LOSS-False")
    assert (runs.run_name("toy", 32, (32, 0, 0, 0), ["TRAINER.HIPROMPT.LOCAL_BRANCH", "False", "OPTIM.MAX_EPOCH", "1"])
            == "toy_nctx32_32-0-0-0_TRAINER.HIPROMPT.LOCAL_BRANCH-False-OPTIM.MAX_EPOCH-1")
    # README: EVAL_OPTS="TRAINER.HIPROMPT.LAMBDA_FUSE 1.0" -> <run>__<EVAL_OPTS>
    assert (runs.eval_run_name("rn50_nctx32_16-8-4-4", ["TRAINER.HIPROMPT.LAMBDA_FUSE", "1.0"])
            == "rn50_nctx32_16-8-4-4__TRAINER.HIPROMPT.LAMBDA_FUSE-1.0")


def test_override_values_with_spaces_slashes_commas_and_accents_become_underscores():
    # every byte but a letter, digit, '.', '-' -> '_' (é is two bytes in UTF-8); one trailing '-' dropped
    assert (runs.run_name("rn50", 32, (16, 8, 4, 4), ["DATASET.TEXT.DIR", "/data/my knowledge,v2", "K", "é"])
            == "rn50_nctx32_16-8-4-4_DATASET.TEXT.DIR-_data_my_knowledge_v2-K-__")
    assert runs.run_name("b", 8, (4, 2, 1, 1), ["K", "x-"]) == "b_nctx8_4-2-1-1_K-x-"
    assert runs.run_name("b", 8, (4, 2, 1, 1), [""]) == "b_nctx8_4-2-1-1_"


def test_context_opts_set_the_four_counts():
    assert runs.context_opts((16, 8, 4, 4)) == (
        "TRAINER.HIPROMPT.N_CTX_SHARED", 16, "TRAINER.HIPROMPT.N_CTX_COARSE", 8,
        "TRAINER.HIPROMPT.N_CTX_FINE", 4, "TRAINER.HIPROMPT.N_CTX_CLASS", 4)


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hiprompt.training.runs", *args], cwd=REPO, capture_output=True,
                          text=True, env=env)


def test_command_line_prints_the_composition_and_the_name():
    env = {k: v for k, v in os.environ.items() if k != "COMPOSITION"}
    assert cli("composition", "32", env=env).stdout == "16 8 4 4\n"
    assert cli("composition", "--composition", "0,0,0,32", "32", env=env).stdout == "0 0 0 32\n"
    assert cli("name", "tiny", "8", "OPTIM.MAX_EPOCH", "1", env=env).stdout == "tiny_nctx8_4-2-1-1_OPTIM.MAX_EPOCH-1\n"
    assert cli("name", "toy", "32", env={**env, "COMPOSITION": "32,0,0,0"}).stdout == "toy_nctx32_32-0-0-0\n"
    bad = cli("name", "toy", "32", env={**env, "COMPOSITION": "16,8,4"})
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: COMPOSITION='16,8,4': expected four whole numbers S,P1,P2,C")


def test_shell_assignments_survive_eval_in_bash():
    script = ('eval "$(python -m hiprompt.training.runs shell --composition "" rn50 32 K "a b/c" L "it\'s")"; '
              'printf "%s|" "$N_S" "$N_P1" "$N_P2" "$N_C" "$RUN" "${CTX_OPTS[@]}"')
    done = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split("|")[:-1] == [
        "16", "8", "4", "4", "rn50_nctx32_16-8-4-4_K-a_b_c-L-it_s",
        "TRAINER.HIPROMPT.N_CTX_SHARED", "16", "TRAINER.HIPROMPT.N_CTX_COARSE", "8",
        "TRAINER.HIPROMPT.N_CTX_FINE", "4", "TRAINER.HIPROMPT.N_CTX_CLASS", "4"]


def test_eval_script_reads_the_run_and_writes_the_sibling_folder(tmp_path):
    """scripts/eval.sh with `python train.py` replaced by a recorder: the folders it passes."""
    shim = tmp_path / "bin" / "python"
    shim.parent.mkdir()
    shim.write_text(f'#!/usr/bin/env bash\nif [[ $1 == train.py ]]; then printf "%s\\n" "$@" >> "$CALLS"; exit 0; fi\n'
                    f'exec {sys.executable} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("COMPOSITION", "EVAL_OPTS", "HIPROMPT_WEIGHTS")}
    env.update(PATH=f"{shim.parent}:{env['PATH']}", CALLS=str(calls), OUTPUT="out", SEEDS="1",
               COMPOSITION="8,4,2,2", EVAL_OPTS="TRAINER.HIPROMPT.LAMBDA_FUSE 1.0")
    done = subprocess.run(["bash", "scripts/eval.sh", "coco", "rn50", "16", "TRAINER.HIPROMPT.ORDER_LOSS", "False"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    args = calls.read_text().splitlines()
    run = "out/coco/HierarchicalCoOp/rn50_nctx16_8-4-2-2_TRAINER.HIPROMPT.ORDER_LOSS-False"
    assert args[args.index("--model-dir") + 1] == f"{run}/seed1"
    assert args[args.index("--output-dir") + 1] == f"{run}__TRAINER.HIPROMPT.LAMBDA_FUSE-1.0/seed1"
    i = args.index("TRAINER.HIPROMPT.N_CTX_SHARED")
    assert args[i:] == ["TRAINER.HIPROMPT.N_CTX_SHARED", "8", "TRAINER.HIPROMPT.N_CTX_COARSE", "4",
                        "TRAINER.HIPROMPT.N_CTX_FINE", "2", "TRAINER.HIPROMPT.N_CTX_CLASS", "2",
                        "TRAINER.HIPROMPT.ORDER_LOSS", "False", "TRAINER.HIPROMPT.LAMBDA_FUSE", "1.0"]
