"""No silent wrong result in the knowledge stage (issue 25): repeated corpus sentences
dropped and counted, an unavailable grouping fallback stopped before the first question, an
unwritable or busy --out reported in one line (exit status 2). Scripted back-ends (fast)."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hiprompt.data.knowledge as knowledge_module
from hiprompt.data.knowledge import FILES, KnowledgeFolder, content_hash
from llm_knowledge.backends import BackendOptions, register_backend
from llm_knowledge.cli import main
from llm_knowledge.counts import build_counts
from llm_knowledge.grouping import GroupingOptions
from llm_knowledge.labelling import Labeller
from llm_knowledge.pipeline import OutputFolderError, RunConfig, run

REPO = Path(__file__).resolve().parents[1]
PETS = {"dog": "Pets are loved by many families.", "cat": "PETS are loved  by many families.",
        "bed": "pets are loved by many families."}  # one sentence up to case and spaces


class RepeatingBackend:
    """A small LLM's habit: the same sentence for many questions. Per (class, attribute):
    a sentence of its own, the pet sentence (case and spacing varied by class) and a shared one
    ("Colours and sizes vary a lot." for colour and size; for shape, the dog's and cat's own
    sentence and, for the bed, the shared one with "!" instead of ".", which is another text)."""

    calls = 0

    def __init__(self, options):
        self.options = options

    def identity(self):
        return {"backend": "repeating", "model": "r1", "settings": {}}

    def answer_many(self, questions):
        for question in questions:
            type(self).calls += 1
            kind = question.kind
            if kind == "common_attributes":
                yield "1. colour\n2. size\n3. shape"
            elif kind == "class_attributes":
                yield "1. colour\n2. size"
            elif kind == "filter_attributes":
                yield "1. colour"
            elif kind == "coarse_groups":
                yield "Pets: dog, cat"
            elif kind == "fine_groups":
                yield "Pets: dog, cat"
            elif kind == "describe":
                label, attribute = question.classes[0], question.attribute
                if attribute != "shape":
                    shared = "Colours and sizes vary a lot."
                elif label == "bed":
                    shared = "Colours and sizes vary a lot!"
                else:
                    shared = f"Its shape suits a {label}."
                pets = PETS.get(label, PETS["dog"])
                yield f"1. The {attribute} of the {label} is easy to see.\n2. {pets}\n3. {shared}"
            else:  # relation: the pet sentence again, but of another kind
                yield ("1. A dog and a cat share the bed.\n2. Pets are loved by many families.\n"
                       "3. The dog sleeps while the cat watches.")


register_backend("repeating", RepeatingBackend)
CLASSES = ["dog", "cat", "bed"]


def _config(tmp_path, out="out", classes=CLASSES, backend="repeating", **changes):
    fields = dict(classnames=list(classes), out_dir=tmp_path / out, cache_dir=tmp_path / "cache",
                  counts=build_counts("small"), profile="small", backend=backend,
                  options=BackendOptions(), source="test", progress=False)
    fields.update(changes)
    return RunConfig(**fields)


def _knowledge_files(folder: Path) -> dict:
    return {name: (folder / name).read_bytes() for name in FILES if (folder / name).exists()}


# ------------------------------------------------------------------ 15: repeats
def test_repeated_sentences_are_dropped_merged_and_counted(tmp_path):
    manifest = run(_config(tmp_path))
    out = tmp_path / "out"
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    texts = [(r["kind"], r["text"], r["asked"]) for r in records]
    every = ["dog", "cat", "bed"]
    # worked out by hand from the script: questions in class order, attributes colour, size,
    # shape (coarse) and colour only (fine, the same prompts: the same answers)
    expected = [("coarse", "The colour of the dog is easy to see.", ["dog"]),
                ("coarse", "Pets are loved by many families.", every),
                ("coarse", "Colours and sizes vary a lot.", every),
                ("coarse", "The size of the dog is easy to see.", ["dog"]),
                ("coarse", "The shape of the dog is easy to see.", ["dog"]),
                ("coarse", "Its shape suits a dog.", ["dog"]),
                ("coarse", "The colour of the cat is easy to see.", ["cat"]),
                ("coarse", "The size of the cat is easy to see.", ["cat"]),
                ("coarse", "The shape of the cat is easy to see.", ["cat"]),
                ("coarse", "Its shape suits a cat.", ["cat"]),
                ("coarse", "The colour of the bed is easy to see.", ["bed"]),
                ("coarse", "The size of the bed is easy to see.", ["bed"]),
                ("coarse", "The shape of the bed is easy to see.", ["bed"]),
                ("coarse", "Colours and sizes vary a lot!", ["bed"]),  # "!" is another text
                ("fine", "The colour of the dog is easy to see.", ["dog"]),
                ("fine", "Pets are loved by many families.", every),
                ("fine", "Colours and sizes vary a lot.", every),
                ("fine", "The colour of the cat is easy to see.", ["cat"]),
                ("fine", "The colour of the bed is easy to see.", ["bed"]),
                # another kind keeps its own copy (a kind selected alone stays whole)
                ("relation", "A dog and a cat share the bed.", ["dog", "cat"]),
                ("relation", "Pets are loved by many families.", ["dog", "cat"]),
                ("relation", "The dog sleeps while the cat watches.", ["dog", "cat"])]
    assert texts == expected
    labeller = Labeller(CLASSES, {})
    assert all(r["found"] == labeller.find(r["text"]) for r in records)  # the kept text's own
    # coarse: the pet sentence 8 times, the shared one 5 (9 questions x 3 = 27 = 14 + 13);
    # fine: 2 + 2 (3 x 3 = 9 = 5 + 4); relation: one question
    assert manifest["corpus_repeats_dropped"] == {"coarse": 13, "fine": 4, "relation": 0}
    assert manifest["corpus"] == {"coarse": 14, "fine": 5, "relation": 3}
    assert json.loads((out / "manifest.json").read_text())["corpus_repeats_dropped"] == {
        "coarse": 13, "fine": 4, "relation": 0}
    corpus = KnowledgeFolder(out).corpus(label_policy="asked")
    assert len(corpus.texts) == 22
    assert corpus.labels[1].tolist() == [1.0, 1.0, 1.0]  # the merged pet sentence

    # the same cache writes the same files, byte for byte, here and in a new folder
    made = _knowledge_files(out)
    again = run(_config(tmp_path))
    assert again["llm_calls"] == 0 and _knowledge_files(out) == made
    assert again["corpus_repeats_dropped"] == manifest["corpus_repeats_dropped"]
    run(_config(tmp_path, out="fresh"))
    assert _knowledge_files(tmp_path / "fresh") == made
    # a partial rerun carries the earlier kinds' counts with their sentences
    partial = run(_config(tmp_path, stages=("relation",)))
    assert partial["carried_forward"] == ["attributes", "coarse", "fine"]
    assert partial["corpus_repeats_dropped"] == {"coarse": 13, "fine": 4, "relation": 0}
    assert _knowledge_files(out) == made


# ------------------------------------------------------------------ 16: the fallback's encoder
TEN = ["dog", "cat", "horse", "sheep", "car", "bus", "truck", "train", "cup", "fork"]


def test_an_unavailable_grouping_fallback_stops_before_the_first_question(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    RepeatingBackend.calls = 0
    config = _config(tmp_path, classes=TEN,
                     grouping=GroupingOptions(backbone="tiny", weights=str(missing)))
    with pytest.raises(ValueError) as info:
        run(config)
    assert RepeatingBackend.calls == 0 and not (tmp_path / "out").exists()
    message = str(info.value)
    assert message == (
        f"--group-source auto: the fallback for degenerate LLM groups needs the CLIP text encoder of "
        f"tiny ('{missing}'), which cannot be built: tiny: no checkpoint file at '{missing}' (the small "
        "configs have no downloadable weights: pass a state-dict file, or `random`). Pass --group-weights "
        "FILE (a local checkpoint of tiny) or another --group-backbone/--group-weights, or --group-source "
        "llm to keep the LLM's groups without the fallback")
    classes = tmp_path / "ten.txt"
    classes.write_text("\n".join(TEN) + "\n")
    args = ["--classes", str(classes), "--backend", "repeating", "--profile", "small",
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            "--group-backbone", "tiny", "--group-weights", str(missing)]
    assert main(args) == 2
    assert capsys.readouterr().err == f"llm-knowledge: error: {message}\n"
    assert RepeatingBackend.calls == 0
    # --group-source embedding needs it for sure: stopped as early
    assert main([*args, "--group-source", "embedding"]) == 2
    assert capsys.readouterr().err.startswith(
        "llm-knowledge: error: --group-source embedding: the groups need the CLIP text encoder of tiny")
    assert RepeatingBackend.calls == 0
    # the switch the message names: the LLM's groups, no encoder needed
    assert main([*args, "--group-source", "llm", "--stages", "groups"]) == 0
    assert RepeatingBackend.calls == 1
    # fewer classes than a degenerate grouping needs (min_classes, 8): auto never falls back
    small = run(_config(tmp_path, out="three", stages=("groups",),
                        grouping=GroupingOptions(backbone="tiny", weights=str(missing))))
    assert small["groups"]["source"] == "llm"


# ------------------------------------------------------------------ 6: --out cannot be written
def test_a_read_only_out_is_one_line_before_the_first_question(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro" / "out"
    real_mkdir = Path.mkdir

    def read_only_mkdir(self, *args, **kwargs):
        if self in (out, out.parent):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    RepeatingBackend.calls = 0
    assert main(["--classes", "voc2007", "--backend", "repeating", "--profile", "small",
                 "--group-source", "llm", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"llm-knowledge: error: cannot write the knowledge folder {out}: Read-only file system; "
        "choose another --out\n")
    assert RepeatingBackend.calls == 0


def test_a_write_refused_at_the_end_is_one_line(tmp_path, capsys, monkeypatch):
    def refused(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(path).parent))

    monkeypatch.setattr(knowledge_module, "new_folder_beside", refused)
    out = tmp_path / "out"
    assert main(["--classes", "voc2007", "--backend", "repeating", "--profile", "small",
                 "--group-source", "llm", "--stages", "groups", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"llm-knowledge: error: cannot write the knowledge folder {out}: Read-only file system; "
        "choose another --out\n")
    assert not out.exists()  # the folder made only to hold the lock is gone again
    with pytest.raises(OutputFolderError):
        run(_config(tmp_path, stages=("groups",)))


# ------------------------------------------------------------------ the lock on --out
HOLD = ("import sys; from hiprompt.fileio import FolderLock\n"
        "with FolderLock(sys.argv[1], 'knowledge folder'):\n"
        "    print('held', flush=True); sys.stdin.read()\n")


def test_a_second_run_on_a_busy_out_stops_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "out"
    run(_config(tmp_path, stages=("groups",)))
    assert not (out / ".lock").exists()  # never inside the finished folder
    before = _knowledge_files(out)
    manifest_before = (out / "manifest.json").read_bytes()
    digest = content_hash(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        RepeatingBackend.calls = 0
        args = ["--classes", str(tmp_path / "classes.txt"), "--backend", "repeating", "--profile",
                "small", "--stages", "groups", "--out", str(out), "--cache-dir", str(tmp_path / "cache2"),
                "--no-progress"]
        (tmp_path / "classes.txt").write_text("dog\ncat\nbed\n")
        assert main(args) == 2
        assert capsys.readouterr().err == (
            f"llm-knowledge: error: {out} is in use by pid {holder.pid} (knowledge folder: -c {out}); wait for "
            "it to finish, or write this knowledge folder elsewhere\n")
        assert RepeatingBackend.calls == 0
        # the holder's lock file in a finished folder breaks neither its digests nor its hash
        assert (out / ".lock").exists()
        assert _knowledge_files(out) == before and (out / "manifest.json").read_bytes() == manifest_before
        assert KnowledgeFolder(out).classnames == CLASSES and content_hash(out) == digest
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert main(args) == 0  # free again
    assert RepeatingBackend.calls == 1  # Π4, never cached in cache2 (a two-class group: no Π4b)
    assert not (out / ".lock").exists()
    assert KnowledgeFolder(out).classnames == CLASSES


def test_a_synonyms_file_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Editors on Windows save JSON with a UTF-8 byte-order mark; --synonyms reads it as the
    same table (as the class lists are read), and a table naming an unknown class is refused."""
    from llm_knowledge.cli import read_synonyms

    table = {"dog": ["puppy", "hound"], "cat": ["kitten"]}
    plain, marked = tmp_path / "plain.json", tmp_path / "marked.json"
    plain.write_text(json.dumps(table), encoding="utf-8")
    marked.write_bytes(b"\xef\xbb\xbf" + json.dumps(table).encode("utf-8"))
    want = {"cat": ["kitten"], "dog": ["puppy", "hound"], "bird": []}
    assert read_synonyms(str(marked), ["cat", "dog", "bird"]) == want
    assert read_synonyms(str(plain), ["cat", "dog", "bird"]) == want
    with pytest.raises(ValueError, match=r"keys \['dog'\] are not among the classes"):
        read_synonyms(str(marked), ["cat"])
