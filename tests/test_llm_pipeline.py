"""The pipeline's logic, CLI and registry with a scripted back-end (fast; the real-LLM runs
are in test_llm_llamacpp.py and test_llm_chatglm.py)."""

import importlib.util
import json
import socket

import pytest

from llm_knowledge.backends import (
    BackendError, BackendOptions, backend_class, create_backend, register_backend,
)
from llm_knowledge.cli import main
from llm_knowledge.counts import build_counts
from llm_knowledge.pipeline import RunConfig, resolve_stages, run
from llm_knowledge.questions import KINDS


class ScriptedBackend:
    """Answers each kind of question in one of the messy shapes real LLMs use."""

    calls = 0

    def __init__(self, options):
        self.options = options

    def identity(self):
        return {"backend": "scripted", "model": "script-v1",
                "settings": {"temperature": self.options.temperature}}

    def answer_many(self, questions):
        for question in questions:
            type(self).calls += 1
            assert question.kind in KINDS and question.prompt
            if question.kind == "common_attributes":
                yield "Sure! Here are the attributes:\n1. colour\n2. size\n3. shape\n4. size"
            elif question.kind == "class_attributes":
                yield f"{question.classes[0]} habitat, sound, 颜色"
            elif question.kind == "filter_attributes":
                yield "1. colour\n2. unicorn horn\n3. size"
            elif question.kind == "describe":
                if question.attribute == "shape":
                    yield "I'm sorry, but I cannot help with that."
                else:
                    yield (f"1. A {question.classes[0]} sits next to a cat on the sofa.\n"
                           f"2. The {question.attribute} of the {question.classes[0]} shows.\n"
                           "3. Nice.")
            elif question.kind == "coarse_groups":
                yield "Home: dogs, cats, beds\nStreet: cars, a bus\nSky: airplane"
            elif question.kind == "fine_groups":
                yield "Pets: dog, cat\nFurniture: bed"
            else:
                a, b = question.classes
                yield f"- A {a} waits near a {b} in the morning.\n- A {a} and a {b} together."


register_backend("scripted", ScriptedBackend)
CLASSES = ["dog", "cat", "bed", "car", "bus"]


def _config(tmp_path, **options):
    return RunConfig(classnames=CLASSES, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                     counts=build_counts("small"), profile="small", backend="scripted",
                     options=BackendOptions(**options), source="test", progress=False)


def test_outputs_follow_the_contract(tmp_path):
    manifest = run(_config(tmp_path))
    out = tmp_path / "out"
    assert (out / "classnames.txt").read_text().splitlines() == CLASSES
    attributes = json.loads((out / "attributes.json").read_text())
    assert attributes["common"] == ["colour", "size", "shape"]
    assert attributes["per_class"]["dog"] == ["dog habitat", "sound"]
    assert attributes["filtered"]["cat"] == ["colour", "size"]
    groups = json.loads((out / "groups.json").read_text())
    assert groups == {"coarse": [["dog", "cat", "bed"], ["car", "bus"]],
                      "fine": [["dog", "cat"], ["car", "bus"]]}
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert kinds == {"coarse", "fine", "relation"}
    first = records[0]
    assert first == {"text": "A dog sits next to a cat on the sofa.", "asked": ["dog"],
                     "found": ["dog", "cat"], "kind": "coarse", "question": first["question"]}
    assert "from the angle of the colour" in first["question"]
    relation = [r for r in records if r["kind"] == "relation"]
    pairs = {tuple(r["asked"]) for r in relation}  # n_pairs=1 per group, coarse and fine
    assert len(pairs) == 3 and {("dog", "cat"), ("car", "bus")} < pairs
    assert all(set(pair) <= {"dog", "cat", "bed"} for pair in pairs - {("car", "bus")})
    synonyms = json.loads((out / "synonyms.json").read_text())
    assert list(synonyms) == CLASSES

    stats = manifest["questions"]
    assert stats["common_attributes"]["unusable_by_reason"] == {"duplicate": 1, "preamble": 1}
    assert stats["class_attributes"]["unusable_by_reason"] == {"not_english": 5}
    assert stats["describe"]["refused"] == 5
    assert stats["describe"]["unusable_by_reason"]["too_short"] > 0
    assert stats["filter_attributes"]["unusable_by_reason"]["not_in_list"] == 5
    assert stats["fine_groups"]["unusable_by_reason"] == {"singleton_group": 1}
    assert manifest["llm_calls"] == sum(s["llm_calls"] for s in stats.values())
    assert manifest["corpus"]["relation"] == 6
    assert manifest["backend"]["model"] == "script-v1"


def test_rerun_asks_nothing_and_new_settings_ask_again(tmp_path):
    ScriptedBackend.calls = 0
    first = run(_config(tmp_path))
    calls = ScriptedBackend.calls
    assert calls == first["llm_calls"] > 0
    second = run(_config(tmp_path))
    assert ScriptedBackend.calls == calls and second["llm_calls"] == 0
    assert second["questions"]["describe"]["from_cache"] == second["questions"]["describe"][
        "asked"]
    third = run(_config(tmp_path, temperature=0.5))
    assert third["llm_calls"] == first["llm_calls"]


def test_stages_add_what_they_need(tmp_path):
    assert resolve_stages(["relation", "coarse"]) == ("attributes", "coarse", "groups",
                                                      "relation")
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        resolve_stages(["nope"])
    config = _config(tmp_path)
    config.stages = ("groups",)
    manifest = run(config)
    assert manifest["stages"] == ["groups"]
    assert not (tmp_path / "out" / "corpus.jsonl").exists()
    assert not (tmp_path / "out" / "attributes.json").exists()
    assert set(manifest["questions"]) == {"coarse_groups", "fine_groups"}


def test_counts_profiles_and_overrides():
    assert build_counts("paper").n_common == 90 and build_counts("paper").n_class == 30
    assert build_counts("small", ["n_common=5", "seed=3"]).n_common == 5
    for bad in ["n_common", "n_nope=3", "n_common=x", "n_common=0"]:
        with pytest.raises(ValueError, match="bad count override"):
            build_counts("small", [bad])
    with pytest.raises(ValueError, match="unknown profile"):
        build_counts("huge")


def test_registry_resolves_lazily():
    register_backend("lazy-llama", "llm_knowledge.backends.llamacpp:LlamaCppBackend")
    assert backend_class("lazy-llama").__name__ == "LlamaCppBackend"
    with pytest.raises(KeyError, match="unknown back-end 'nope'"):
        backend_class("nope")
    if importlib.util.find_spec("hiprompt.toyworld") is None:
        with pytest.raises(BackendError, match="hiprompt.toyworld.oracle"):
            backend_class("toy-oracle")
    else:
        assert backend_class("toy-oracle").__name__ == "ToyOracleBackend"


def test_http_backend_reports_an_unreachable_server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = BackendOptions(base_url=f"http://127.0.0.1:{port}/v1", retries=0, timeout=5)
    with pytest.raises(BackendError, match="cannot reach the LLM server"):
        create_backend("openai", options)


def _cli(tmp_path, *args):
    return main(["--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress", *args])


def test_cli_errors_name_the_problem(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# only a comment\n")
    assert _cli(tmp_path, "--classes", str(empty)) == 2
    assert "no class names" in capsys.readouterr().err
    assert _cli(tmp_path, "--classes", "imagenet") == 2
    assert "neither a built-in class set" in capsys.readouterr().err
    twice = tmp_path / "twice.txt"
    twice.write_text("dog\ncat\ndog\n")
    assert _cli(tmp_path, "--classes", str(twice)) == 2
    assert "twice.txt:3: class 'dog' repeats line 1" in capsys.readouterr().err
    assert _cli(tmp_path, "--classes", "voc2007", "--backend", "llama-cpp",
                "--model", str(tmp_path / "missing.gguf")) == 2
    assert "missing.gguf" in capsys.readouterr().err
    assert _cli(tmp_path, "--classes", "voc2007", "--set", "n_nope=1") == 2
    assert "bad count override" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(tmp_path, "--classes", "voc2007", "--backend", "nope")


def test_cli_help_documents_everything(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ["--classes", "--backend", "--model", "--out", "--profile", "--set",
                   "--stages", "--cache-dir", "--base-url", "--concurrency", "--retries",
                   "chatglm-cpp", "n_common=90"]:
        assert option in text


class DyingBackend(ScriptedBackend):
    """Answers the first two questions of a batch, then stops (a server that went away)."""

    def answer_many(self, questions):
        for index, answer in enumerate(super().answer_many(questions)):
            if index == 2:
                return
            yield answer


def test_a_backend_that_stops_early_fails_clearly_and_the_rerun_resumes(tmp_path):
    register_backend("dying", DyingBackend)
    config = _config(tmp_path)
    config.backend = "dying"
    with pytest.raises(BackendError, match="gave None instead of a text answer"):
        run(config)
    answers = (tmp_path / "cache" / "answers.jsonl").read_text().splitlines()
    assert len(answers) == 2  # Π1a and the first Π1b were kept
    config.backend = "scripted"  # same identity: a working back-end picks up from there
    ScriptedBackend.calls = 0
    manifest = run(config)
    assert manifest["questions"]["class_attributes"]["from_cache"] == 1
    assert manifest["questions"]["common_attributes"]["from_cache"] == 1


class KeywordBackend(ScriptedBackend):
    """A back-end whose constructor names only the options it needs (as the toy oracle's)."""

    def __init__(self, *, seed=0, max_tokens=1):
        super().__init__(BackendOptions(seed=seed, max_tokens=max_tokens))


def test_backends_get_the_options_their_constructor_names():
    register_backend("keyword", KeywordBackend)
    backend = create_backend("keyword", BackendOptions(seed=7, max_tokens=9, model="m"))
    assert (backend.options.seed, backend.options.max_tokens) == (7, 9)
    assert create_backend("scripted", BackendOptions(seed=3)).options.seed == 3


def test_toy_oracle_runs_the_whole_stage_when_present(tmp_path):
    pytest.importorskip("hiprompt.toyworld.oracle", reason="the toy world is not built yet")
    from hiprompt.toyworld.world import CLASS_INFO

    config = _config(tmp_path)
    config.backend = "toy-oracle"
    config.classnames = list(CLASS_INFO)[:4]
    manifest = run(config)
    assert manifest["backend"]["backend"] == "toy-oracle"
    assert manifest["corpus"] and manifest["llm_calls"] > 0
    groups = json.loads((tmp_path / "out" / "groups.json").read_text())
    assert all(set(g) <= set(config.classnames) for level in groups.values() for g in level)
