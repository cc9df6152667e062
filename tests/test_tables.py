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


def inspect(table, args, protocol="paper"):
    """{run label: (folder, command)} as the table script would run them (seed 1), each row
    under TEST.PROTOCOL `protocol` (as `--protocol paper,peer` runs its peer rows)."""
    code = (f"import json, common, {table}\n"
            f"world = common.World(common.parse_args('', {args!r}, extra=common.protocol_option))\n"
            f"rows = [world.under(r, {protocol!r}) for r in {table}.runs(world)]\n"
            f"runs = {{r.label: (str(world.folder(r)), [str(c) for c in world._command(r, 1, world.folder(r))])"
            f" for r in rows}}\n"
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


def test_protocols_side_by_side(tmp_path):
    args = world_args(tmp_path) + ["--protocol", "paper,peer"]
    paper, peer = inspect("table2", world_args(tmp_path)), inspect("table2", args, "peer")
    ours = "Hierarchical (16/8/4/4), global + local"
    folder, command = peer[ours]  # an evaluation of the trained run's saved epochs, into its own folder
    assert folder == paper[ours][0] + "__eval_TEST.PROTOCOL-peer"
    assert "--eval-only" in command and command[command.index("--model-dir") + 1] == paper[ours][0] + "/seed1"
    assert command[command.index("TEST.PROTOCOL") + 1] == "peer"
    zero_shot = "Hand-crafted prompts (zero-shot)"
    assert peer[zero_shot] == paper[zero_shot]  # nothing to select
    # DualCoOp on COCO's images trains again: its loader drops the images without an annotation
    coco = inspect("table2", [*args, "--world", "coco"], "peer")["DualCoOp, images with half of the labels hidden"]
    assert "--eval-only" not in coco[1] and coco[1][coco[1].index("TEST.PROTOCOL") + 1] == "peer"

    runs = inspect("table3", world_args(tmp_path))
    peer = inspect("table3", args, "peer")
    for number, label in enumerate(runs):
        for folder, value, epoch in ((runs[label][0], 60.0, 2), (peer[label][0], 70.0, 1)):
            seed = Path(folder) / "seed1"
            seed.mkdir(parents=True)
            (seed / "results_test.json").write_text(json.dumps(
                {"metrics": {"mAP": value + number, "F1@3": 50.5}, "epoch": epoch}))
    done = subprocess.run([sys.executable, str(TABLES / "table3.py"), *args], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "[1/" not in done.stdout  # nothing ran
    lines = (tmp_path / "out" / "toy" / "table3.md").read_text().splitlines()
    header = [c.strip() for c in next(line for line in lines if line.startswith("| components")).split("|")[1:-1]]
    assert header[3:] == ["F1@3", "mAP", "F1@3 (peer)", "mAP (peer)", "seeds", "epochs (peer)"]
    row = next(line for line in lines if line.startswith("| local learning ✓, order loss ✓"))
    assert [c.strip() for c in row.split("|")[2:-1]] == [
        "57.3", "66.8", "50.50 ± 0.00", "63.00 ± 0.00", "50.50 ± 0.00", "73.00 ± 0.00", "1", "1"]


def test_dualcoop_on_voc2007_takes_its_voc_learning_rate(tmp_path):
    import yaml

    args = world_args(tmp_path) + ["--world", "voc2007", "--backbone", "rn50"]
    command = inspect("table2", args)["DualCoOp, images with half of the labels hidden"][1]
    config = Path(command[command.index("--config-file") + 1])
    assert config.name == "rn50_voc2007.yaml" and config.parent.name == "DualCoOp"
    voc, coco = (yaml.safe_load(path.read_text()) for path in (config, config.with_name("rn50.yaml")))
    assert voc["OPTIM"].pop("LR") == 0.001 and coco["OPTIM"].pop("LR") == 0.002  # DualCoOp's README
    assert voc == coco  # nothing else differs
