"""The table scripts: which runs a table needs, the commands for them, skipping finished
runs, and the table beside the paper's numbers (fake finished runs, nothing trained)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLES = REPO / "scripts" / "tables"


def world_args(tmp_path):
    data, knowledge = tmp_path / "data", tmp_path / "knowledge"
    for folder in (data, knowledge):
        folder.mkdir(exist_ok=True)
    (data / "labels.csv").write_text("image,labels\n")
    for name in ("corpus.jsonl", "groups.json", "classnames.txt"):
        (knowledge / name).write_text("")
    return ["--quick", "--data", str(data), "--knowledge", str(knowledge), "--output", str(tmp_path / "out"),
            "--train-data", str(tmp_path / "train")]


def inspect(table, args):
    """{run label: (folder, command)} as the table script would run them (seed 1)."""
    code = (f"import json, common, {table}\n"
            f"world = common.World(common.parse_args('', {args!r}))\n"
            f"runs = {{r.label: (str(world.folder(r)), [str(c) for c in world._command(r, 1, world.folder(r))])"
            f" for r in {table}.runs(world)}}\n"
            "print(json.dumps(runs))")
    done = subprocess.run([sys.executable, "-c", code], cwd=TABLES, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_runs_are_shared_between_tables_and_commands_carry_the_world(tmp_path):
    args = world_args(tmp_path)
    table2, table3, figure4b = inspect("table2", args), inspect("table3", args), inspect("figure4b", args)
    ours = table2["Hierarchical (16/8/4/4), global + local"]
    assert table3["local learning ✓, order loss ✓"][0] == ours[0]  # the same run folder
    command = ours[1]
    assert command[command.index("--trainer") + 1] == "HierarchicalCoOp"
    assert command[-2:] == ["OPTIM.MAX_EPOCH", "2"]  # quick mode
    assert command[command.index("DATASET.TEXT.DIR") + 1] == str(tmp_path / "knowledge")
    images = table2["DualCoOp, images with half of the labels hidden"][1]
    assert "DATASET.TEXT.DIR" not in images
    assert images[images.index("DATASET.TRAIN_CSV") + 1] == str(tmp_path / "train" / "labels.csv")
    captions = table2["TaI-DPT (16 S, global + local), captions"][1]
    assert captions[captions.index("DATASET.TEXT.DIR") + 1] == "knowledge/toy-captions"
    λ = figure4b["λ2 = 0.3"][1]  # evaluation only, of the default run's prompts
    assert "--eval-only" in λ and λ[λ.index("--model-dir") + 1] == ours[0] + "/seed1"
    assert λ[λ.index("TRAINER.HIPROMPT.LAMBDA_FUSE") + 1] == "0.3" and "OPTIM.MAX_EPOCH" not in λ


def test_finished_runs_are_skipped_and_the_table_stands_beside_the_papers(tmp_path):
    args = world_args(tmp_path)
    runs = inspect("table3", args)
    for number, (folder, _) in enumerate(runs.values()):
        seed = Path(folder) / "seed1"
        seed.mkdir(parents=True)
        (seed / "results_test.json").write_text(json.dumps({"metrics": {"mAP": 60.0 + number, "F1@3": 50.5}}))
    done = subprocess.run([sys.executable, str(TABLES / "table3.py"), *args], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "[1/" not in done.stdout  # nothing ran
    table = (tmp_path / "out" / "toy" / "table3.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table.splitlines() if line.startswith("| local")}
    assert rows["local learning ×, order loss ×"] == ["52.4", "62.2", "50.50 ± 0.00", "60.00 ± 0.00", "1"]
    assert rows["local learning ✓, order loss ✓"] == ["57.3", "66.8", "50.50 ± 0.00", "63.00 ± 0.00", "1"]
    assert (tmp_path / "out" / "toy" / "table3.png").read_bytes()[:4] == b"\x89PNG"
