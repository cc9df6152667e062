"""Top-up of short list answers and groups that carry structure (degenerate groupings
re-asked, then grouped by the frozen text encoder), with fake back-ends (fast)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering

from hiprompt.classnames import prompt_name
from hiprompt.clip.backbone import build_clip
from hiprompt.data.knowledge import KnowledgeFolder
from llm_knowledge import questions as Q
from llm_knowledge.backends import BackendOptions, register_backend
from llm_knowledge.cache import answer_key
from llm_knowledge.cli import main
from llm_knowledge.counts import build_counts
from llm_knowledge.grouping import GroupingOptions, degenerate, embedding_groups
from llm_knowledge.pipeline import RunConfig, TopUpOptions, attempt_seed, run

CLASSES = ["dog", "cat", "horse", "sheep", "car", "bus", "truck", "train", "cup", "fork"]


class ShortListBackend:
    """Greedy answers hold one usable item (its own to the question) and a repeat of it; a
    sampled answer (a top-up attempt) holds one new item named after its seed, and a repeat of
    the greedy one."""

    calls = []

    def __init__(self, options):
        self.options = options

    def identity(self):
        return {"backend": "short-lists", "model": "v1", "settings": {}}

    def answer_many(self, questions):
        for question in questions:
            type(self).calls.append(question)
            name = prompt_name(question.classes[0])
            about = question.attribute or " and ".join(map(prompt_name, question.classes))
            first = f"The {name} stands in the morning light, its {about} plain to see."  # one per question
            if question.kind in ("coarse_groups", "fine_groups"):
                yield "Everything: " + ", ".join(question.classes)
            elif question.kind == "filter_attributes":
                yield "\n".join(f"{i}. {a}" for i, a in enumerate(question.attributes, 1))
            elif question.kind in ("common_attributes", "class_attributes"):
                word = "colour" if question.temperature is None else f"shade {question.seed % 97}"
                yield f"1. {word}\n2. {word}"
            elif question.temperature is None:
                yield f"1. {first}\n2. {first}"
            else:
                yield f"1. {first}\n2. The {name} number {question.seed} waits near the road."


register_backend("short-lists", ShortListBackend)


def _config(tmp_path, classes=CLASSES, out="out", **changes):
    fields = dict(classnames=list(classes), out_dir=tmp_path / out, cache_dir=tmp_path / "cache",
                  counts=build_counts("small"), profile="small", backend="short-lists",
                  options=BackendOptions(), source="test", progress=False,
                  grouping=GroupingOptions(backbone="tiny", weights="random"))
    fields.update(changes)
    return RunConfig(**fields)


def _corpus(out: Path) -> list:
    return [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]


def test_short_answers_are_topped_up_with_seeded_sampling_and_counted(tmp_path):
    ShortListBackend.calls = []
    config = _config(tmp_path, stages=("coarse",), top_up=TopUpOptions(retries=2, seed=5))
    manifest = run(config)
    # small profile: 3 sentences asked per question; greedy gives 1 (and a repeat), each of
    # the 2 attempts 1 new one (and a repeat of the greedy sentence)
    corpus = _corpus(tmp_path / "out")
    by_question = {}
    for record in corpus:
        by_question.setdefault(record["question"], []).append(record["text"])
    assert by_question and all(len(texts) == 3 == len(set(texts))
                               for texts in by_question.values())
    n_describe = len(by_question)
    stats = manifest["questions"]["describe"]
    assert stats["asked"] == n_describe and stats["re_asked"] == 2 * n_describe
    assert stats["topped_up"] == 2 * n_describe and stats["shortfall"] == 0
    assert stats["llm_calls"] == 3 * n_describe and stats["re_llm_calls"] == 2 * n_describe
    # the greedy repeat in each answer (3) and the repeat of the greedy sentence in each attempt
    assert stats["unusable_by_reason"] == {"duplicate": 3 * n_describe}
    # attributes: 2 asked (common 3), greedy gives 1, each attempt 1 new -> common 3, class 2
    assert manifest["questions"]["class_attributes"]["topped_up"] == len(CLASSES)
    assert manifest["top_up"]["calls"] == sum(
        s["re_llm_calls"] for k, s in manifest["questions"].items())
    # the seed of an attempt is fixed by (top-up seed, prompt, attempt): computed by hand
    prompt = next(iter(by_question))
    digest = hashlib.sha256(f"5:2:{prompt}".encode()).hexdigest()
    assert attempt_seed(5, prompt, 2) == int(digest[:8], 16) & 0x7FFFFFFF
    assert f"number {attempt_seed(5, prompt, 2)} " in " ".join(by_question[prompt])
    sampled = [q for q in ShortListBackend.calls if q.temperature is not None]
    assert {q.temperature for q in sampled} == {0.7}
    # every attempt is cached under its sampling; greedy keys are as before top-ups existed
    records = [json.loads(line) for line in (tmp_path / "cache" / "answers.jsonl").open()]
    assert sum("sampling" in r for r in records) == len(sampled)
    greedy = next(r for r in records if "sampling" not in r)
    assert greedy["key"] == hashlib.sha256(json.dumps(
        {"identity": greedy["identity"], "prompt": greedy["prompt"]},
        sort_keys=True).encode()).hexdigest()
    assert answer_key(greedy["identity"], greedy["prompt"]) == greedy["key"]


def test_same_seed_same_corpus_other_seed_other_corpus_rerun_asks_nothing(tmp_path):
    first = run(_config(tmp_path, stages=("coarse",), top_up=TopUpOptions(seed=1)))
    again = run(_config(tmp_path, stages=("coarse",), top_up=TopUpOptions(seed=1)))
    assert again["llm_calls"] == 0 and first["llm_calls"] > 0
    fresh = _config(tmp_path, stages=("coarse",), out="fresh", cache_dir=tmp_path / "cache2",
                    top_up=TopUpOptions(seed=1))
    run(fresh)
    assert _corpus(tmp_path / "fresh") == _corpus(tmp_path / "out")
    other = _config(tmp_path, stages=("coarse",), out="other", top_up=TopUpOptions(seed=2))
    run(other)
    assert _corpus(tmp_path / "other") != _corpus(tmp_path / "out")
    off = _config(tmp_path, stages=("coarse",), out="off", top_up=TopUpOptions(retries=0))
    manifest = run(off)
    assert manifest["top_up"] == {"calls": 0, "asked": 0, "items_added": 0}
    assert all(s["shortfall"] > 0 for k, s in manifest["questions"].items()
               if k in ("describe", "class_attributes"))


# ------------------------------------------------------------------ groups
def _options(**changes):
    return GroupingOptions(**{"backbone": "tiny", "weights": "random", **changes})


def test_degenerate_groupings_are_recognised():
    classes = [f"c{i}" for i in range(10)]
    options = _options()
    assert degenerate([classes], classes, options) == "one group holds 10 of 10 classes"
    assert degenerate([classes[:8], classes[8:]], classes, options) == (
        "one group holds 8 of 10 classes")  # 8 > 0.75 * 10
    assert degenerate([classes[:7], classes[7:]], classes, options) is None
    assert degenerate([classes[:2], classes[2:4]], classes, options) == (
        "only 4 of 10 classes are in a group")  # 4 < 0.5 * 10
    assert degenerate([classes[:5]], classes, options) is None
    assert degenerate([classes[:4]], classes[:4], options) is None  # < min_classes


def test_embedding_groups_cluster_at_two_levels():
    # three bundles of directions in 3-D (5 + 4 + 4 classes), each of two tight sub-bundles
    rng = np.random.default_rng(0)
    centres = {"a1": [10, 0, 0], "a2": [10, 3, 0], "b1": [0, 10, 0], "b2": [0, 10, 3],
               "c1": [0, 0, 10], "c2": [3, 0, 10]}
    layout = ["a1", "a1", "a1", "a2", "a2", "b1", "b1", "b2", "b2", "c1", "c1", "c2", "c2"]
    vectors = np.array([centres[k] for k in layout], float) + rng.normal(0, 0.05, (13, 3))
    names = [f"k{i}" for i in range(13)]
    # round(13 / 4) = 3 coarse groups; each split in max(2, round(size / 2)) = 2
    groups = embedding_groups(names, vectors, coarse_size=4, fine_size=2)
    assert groups["coarse"] == [names[0:5], names[5:9], names[9:13]]
    assert groups["fine"] == [names[0:3], names[3:5], names[5:7], names[7:9], names[9:11],
                              names[11:13]]


def _reference_groups(classes, options):
    """The same two-level clustering through scikit-learn (Ward on unit vectors)."""
    clip = build_clip(options.backbone, options.weights)
    texts = [options.template.format(prompt_name(c)) for c in classes]
    eot = clip.encode_text(clip.tokenize(texts))[0].float().numpy()  # [C, D]
    unit = eot / np.linalg.norm(eot, axis=1, keepdims=True)

    def cut(rows, n):
        labels = AgglomerativeClustering(n_clusters=n, linkage="ward").fit_predict(unit[rows])
        parts = {}
        for row, label in zip(rows, labels):
            parts.setdefault(label, []).append(row)
        return sorted((p for p in parts.values() if len(p) >= 2), key=lambda p: p[0])

    coarse = cut(list(range(len(classes))), max(2, round(len(classes) / options.coarse_size)))
    fine = []
    for rows in coarse:
        fine += [rows] if len(rows) == 2 else cut(rows, max(2, round(len(rows) / options.fine_size)))
    name = lambda parts: [[classes[i] for i in p] for p in sorted(parts, key=lambda p: p[0])]
    return {"coarse": name(coarse), "fine": name(fine)}


def test_degenerate_llm_groups_are_reasked_then_made_from_embeddings(tmp_path):
    ShortListBackend.calls = []
    options = _options(retries=2)
    manifest = run(_config(tmp_path, stages=("groups",), grouping=options))
    group_calls = [q for q in ShortListBackend.calls if q.kind == "coarse_groups"]
    assert len(group_calls) == 3 and [q.temperature for q in group_calls] == [None, 0.7, 0.7]
    assert not [q for q in ShortListBackend.calls if q.kind == "fine_groups"]
    assert manifest["groups"] == {"source": "embedding",
                                  "degenerate": ["one group holds 10 of 10 classes"] * 3}
    groups = json.loads((tmp_path / "out" / "groups.json").read_text())
    assert groups == _reference_groups(CLASSES, options)
    assert KnowledgeFolder(tmp_path / "out").groups == groups  # the contract holds


class RetryGroupsBackend(ShortListBackend):
    """One group of everything when greedy; two scene groups when sampled."""

    def answer_many(self, questions):
        for question, answer in zip(questions, super().answer_many(questions)):
            if question.kind == "coarse_groups" and question.temperature is not None:
                yield "Animals: dog, cat, horse, sheep\nTraffic: car, bus, truck, train"
            else:
                yield answer


register_backend("retry-groups", RetryGroupsBackend)


def test_a_reask_that_gives_structure_is_kept_and_the_flag_chooses_the_source(tmp_path):
    manifest = run(_config(tmp_path, stages=("groups",), backend="retry-groups"))
    assert manifest["groups"] == {"source": "llm-retry",
                                  "degenerate": ["one group holds 10 of 10 classes"]}
    groups = json.loads((tmp_path / "out" / "groups.json").read_text())
    assert groups["coarse"] == [["dog", "cat", "horse", "sheep"], ["car", "bus", "truck", "train"]]

    ShortListBackend.calls = []
    manifest = run(_config(tmp_path, out="llm", stages=("groups",), backend="retry-groups",
                           grouping=_options(source="llm")))
    assert manifest["groups"] == {"source": "llm", "degenerate": []}
    assert json.loads((tmp_path / "llm" / "groups.json").read_text())["coarse"] == [CLASSES]

    ShortListBackend.calls = []
    manifest = run(_config(tmp_path, out="emb", stages=("groups",),
                           grouping=_options(source="embedding")))
    assert manifest["groups"]["source"] == "embedding" and ShortListBackend.calls == []


def test_cli_flags_reach_the_run(tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n")
    code = main(["--classes", str(classes), "--backend", "short-lists", "--profile", "small",
                 "--stages", "groups", "--out", str(tmp_path / "out"), "--cache-dir",
                 str(tmp_path / "cache"), "--no-progress", "--group-source", "embedding",
                 "--group-backbone", "tiny", "--group-weights", "random",
                 "--top-up-retries", "1"])
    assert code == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["groups"]["source"] == "embedding"
    assert manifest["made_for"]["top_up"]["retries"] == 1
    assert manifest["made_for"]["grouping"]["backbone"] == "tiny"
    assert "groups: embedding" in capsys.readouterr().out
    code = main(["--classes", str(classes), "--backend", "short-lists", "--out",
                 str(tmp_path / "bad"), "--group-source", "embedding", "--group-backbone",
                 "tiny", "--group-weights", str(tmp_path / "missing.pt"), "--stages", "groups",
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 2
    assert ("--group-source embedding: the groups need the CLIP text encoder of tiny"
            in capsys.readouterr().err)


def test_questions_carry_their_sampling():
    question = Q.describe("dog", "size", 3)
    assert question.sampling is None
    again = question.resampled(0.9, 11)
    assert again.prompt == question.prompt and again.sampling == {"temperature": 0.9, "seed": 11}
    with pytest.raises(ValueError, match="group source 'nope'"):
        GroupingOptions(source="nope")
