"""Shared test fixtures: the tiny random CLIP, a small knowledge folder, the shared data."""

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HIPROMPT_RUNTIME", "builtin")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_clip():
    from hiprompt.clip import build_clip

    return build_clip("tiny", "random", seed=0)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HIPROMPT_CACHE", str(tmp_path_factory.getbasetemp() / "hiprompt-cache"))


def coco_mini_root() -> Path:
    root = SHARED_DATA / "coco-mini"
    if not (root / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"../shared/data/coco-mini is absent ({root}): real COCO images are needed")
    return root


def voc_mini_root() -> Path:
    root = SHARED_DATA / "voc2007-mini"
    if not (root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main").is_dir():
        pytest.skip(f"../shared/data/voc2007-mini is absent ({root}): real VOC lists are needed")
    return root


def write_knowledge_folder(folder: Path, classnames, groups, sentences) -> Path:
    """A knowledge folder in the `llm_knowledge` output format.

    sentences: (text, [classes], kind) triples; `asked` and `found` both get the classes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classnames.txt").write_text("\n".join(classnames) + "\n")
    (folder / "groups.json").write_text(json.dumps(groups))
    with open(folder / "corpus.jsonl", "w") as handle:
        for text, labels, kind in sentences:
            record = {"text": text, "asked": labels, "found": labels, "kind": kind, "question": "test"}
            handle.write(json.dumps(record) + "\n")
    return folder


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` need a CUDA GPU: skipped, saying so, where there is none."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked cuda; run by scripts/gpu_check.sh)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def plain_class_embeddings(learner):
    """(global [C, D], local [C, D]) of a HierarchicalPromptLearner by the library's plain
    forward, each set on its own at 77 positions: the reference its encodings are held to."""
    global_emb = learner.encoder(learner.global_context() if learner.learnable else None)
    local_emb = learner.encoder(learner.local_context()) if learner.local_context is not None else global_emb
    return global_emb, local_emb


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str):
    """A tmpfs mounted at `folder` with mount `options` (e.g. "size=64k", "size=1m,ro") for the
    duration; the test is skipped where this process may not mount one."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
