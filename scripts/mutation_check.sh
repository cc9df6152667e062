#!/usr/bin/env bash
# Mutation testing of a few core modules with mutmut (pip install mutmut; 3.x, tried with 3.8.1
# on Python 3.11 and pytest 9): every small change mutmut makes to a module should make one of
# the selected tests fail ("killed"); a surviving mutant is a bug the tests would miss, or an
# equivalent change (docs/testing.md lists the ones judged equivalent, with the reason).
#
#   bash scripts/mutation_check.sh                        # losses.py and scoring.py, their tests
#   MODULES="llm_knowledge/labelling.py" TESTS="tests/test_llm_labelling.py" bash scripts/mutation_check.sh
#   JOBS=2 KEEP=1 bash scripts/mutation_check.sh          # 2 test processes; keep the work folder
#   TIMEOUT_MULTIPLIER=15 bash scripts/mutation_check.sh   # mutmut's own default (see below)
#
# A mutant whose tests run longer than TIMEOUT_MULTIPLIER * (their measured time + 1 s) of wall
# time (or twice that of CPU time) is stopped and counted "timeout" (mutmut's timeout_multiplier
# and timeout_constant). mutmut's default multiplier, 15, makes each never-ending loop (e.g. a
# mutant of Labeller.find's) wait minutes; the default here, 8, leaves room for each mutant's own
# pytest start on a loaded machine (3 stopped honest runs of tests/test_text_features.py).
#
# The tree (tracked and untracked, not ignored files) is copied to a temporary folder and
# mutmut runs there, so the working tree never gets mutmut's `mutants/` folder. Prints
# mutmut's per-mutant results and a killed/total line per module.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
MODULES="${MODULES:-hiprompt/model/losses.py hiprompt/model/scoring.py}"
TESTS="${TESTS:-tests/test_method.py tests/test_baseline_losses.py tests/test_dualcoop.py}"
JOBS="${JOBS:-1}"
TIMEOUT_MULTIPLIER="${TIMEOUT_MULTIPLIER:-8}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/hiprompt-mutation.XXXXXX")"
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$WORK"' EXIT; else echo "work folder: $WORK"; fi

python -c "import mutmut" 2>/dev/null || { echo "mutmut is not installed: pip install mutmut" >&2; exit 2; }

cd "$REPO"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
    [[ -e "$path" ]] && { mkdir -p "$WORK/$(dirname "$path")"; cp -p "$path" "$WORK/$path"; }
done

cd "$WORK"
# In the work copy only: tqdm's bars share one lock across processes (a multiprocessing lock
# made in mutmut's main process and inherited by every forked mutant); a mutant stopped while it
# holds it (a timeout) leaves it held, and every later mutant that draws a bar then hangs until
# its own timeout. A lock of each process's own, and no monitor thread, make the mutants
# independent (bars are drawn the same).
if [[ -f tests/conftest.py ]]; then
    printf '\n\n# scripts/mutation_check.sh: a per-process tqdm lock (see there)\n%s\n' \
        'import threading as _threading; import tqdm as _tqdm; _tqdm.tqdm.monitor_interval = 0; _tqdm.tqdm.set_lock(_threading.RLock())' \
        >> tests/conftest.py
fi
{
    # the packages are copied whole (imports resolve inside mutants/); only MODULES are mutated
    echo "[mutmut]"
    echo "source_paths ="
    echo "    hiprompt"
    echo "    llm_knowledge"
    echo "only_mutate ="
    for module in $MODULES; do echo "    $module"; done
    echo "also_copy ="
    for extra in train.py trainers datasets configs knowledge scripts data; do
        [[ -e "$extra" ]] && echo "    $extra"
    done
    echo "timeout_multiplier = $TIMEOUT_MULTIPLIER"
    echo "timeout_constant = 1.0"
    printf 'pytest_add_cli_args =\n    -p\n    no:cacheprovider\n'
    echo "pytest_add_cli_args_test_selection ="
    for test in $TESTS; do echo "    $test"; done
} >> setup.cfg

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HIPROMPT_RUNTIME=builtin
mutmut run --max-children "$JOBS" >mutmut-run.log 2>&1 || { tail -40 mutmut-run.log >&2; exit 1; }
mutmut results --all true >results.txt 2>&1 || mutmut results >results.txt 2>&1 || true
cat results.txt

# mutant names are <module path as dots>.x_<function>__mutmut_<n>; count per module
python - "$MODULES" results.txt <<'PY'
import re
import sys

modules, results = sys.argv[1].split(), open(sys.argv[2]).read().splitlines()
for module in modules:
    stem = module[:-3].replace("/", ".")
    rows = [line for line in results if line.strip().startswith(stem + ".")]
    status = [line.rsplit(":", 1)[-1].strip() for line in rows]
    killed = sum(s == "killed" for s in status)
    print(f"{module}: {killed} killed of {len(status)} mutants"
          + "".join(f"; {n} {s}" for s, n in sorted({s: status.count(s) for s in set(status) if s != "killed"}.items())))
PY
