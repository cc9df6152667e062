"""The pipeline's logic, CLI and registry with a scripted back-end (fast; the real-LLM runs
are in test_llm_llamacpp.py and test_llm_chatglm.py)."""

import contextlib
import dataclasses
import importlib.util
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hiprompt.data.knowledge import KnowledgeFolder
from llm_knowledge import pipeline as pipeline_module
from llm_knowledge import questions as Q
from llm_knowledge.backends import (
    BackendError,
    BackendOptions,
    backend_class,
    create_backend,
    register_backend,
)
from llm_knowledge.cli import main
from llm_knowledge.counts import build_counts
from llm_knowledge.pipeline import STAGES, RunConfig, build_knowledge, resolve_stages, run
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
    with pytest.raises(BackendError, match=re.escape(
            "--retries must be >= 0 and --timeout, --connect-timeout > 0 (got -1, 5, 10.0)")):
        create_backend("openai", dataclasses.replace(options, retries=-1))


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
    assert "twice.txt, line 3: class 'dog' repeats line 1" in capsys.readouterr().err
    assert _cli(tmp_path, "--classes", "voc2007", "--backend", "llama-cpp", "--group-source", "llm",
                "--model", str(tmp_path / "missing.gguf")) == 2
    assert "missing.gguf" in capsys.readouterr().err
    assert _cli(tmp_path, "--classes", "voc2007", "--set", "n_nope=1") == 2
    assert "bad count override" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(tmp_path, "--classes", "voc2007", "--backend", "nope")


def test_build_knowledge_is_what_the_cli_runs(tmp_path):
    """The Python entry point and `llm-knowledge` make the same folder; the command's class
    file is read as any class list (byte-order mark, `#` and blank lines skipped)."""
    ScriptedBackend.calls = 0
    manifest = build_knowledge(CLASSES, tmp_path / "py", backend="scripted", profile="small",
                               counts=["n_sentences=2"], stages=("coarse",), cache_dir=tmp_path / "cache",
                               progress=False, temperature=0.0)
    assert (tmp_path / "py" / "classnames.txt").read_text() == "dog\ncat\nbed\ncar\nbus\n"
    assert manifest["stages"] == ["attributes", "coarse"]  # coarse needs the attributes
    assert manifest["counts"]["n_sentences"] == 2 and manifest["llm_calls"] == ScriptedBackend.calls > 0
    classes = tmp_path / "classes.txt"
    classes.write_bytes("\ufeff# indoors\ndog\ncat\nbed\n\n# outdoors\ncar\nbus\n".encode())
    assert main(["--classes", str(classes), "--backend", "scripted", "--profile", "small", "--set", "n_sentences=2",
                 "--stages", " coarse", "--out", str(tmp_path / "cli"), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"]) == 0
    for name in ("classnames.txt", "attributes.json", "corpus.jsonl"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "py" / name).read_bytes()
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["llm_calls"] == 0  # all cached
    with pytest.raises(ValueError, match=r"unknown back-end options \['temprature'\]"):
        build_knowledge(CLASSES, tmp_path / "typo", backend="scripted", temprature=0.0)


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


def test_backends_are_built_with_the_options():
    assert create_backend("scripted", BackendOptions(seed=3)).options.seed == 3
    oracle = create_backend("toy-oracle", BackendOptions(seed=7, max_tokens=9, model="toy80"))
    assert oracle.seed == 7 and oracle.world.name == "toy80"


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


# ------------------------------------------------------------------ the folder as a whole
def _files(folder: Path) -> dict:
    """The folder's files by name; not the run lock `.lock`, which a failed run leaves in a
    folder that existed (it is no knowledge file: the reader ignores it)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


def _refused(out: Path) -> str:
    """The reader's error for the folder `out`, less the advice that ends each such error."""
    with pytest.raises(ValueError) as info:
        KnowledgeFolder(out)
    advice = (f"; the folder was changed after `python -m llm_knowledge` wrote it: make it again "
              f"with --out {out}")
    assert str(info.value).endswith(advice)
    return str(info.value)[:-len(advice)]


def test_partial_rerun_for_other_classes_carries_nothing_stale(tmp_path, capsys):
    run(_config(tmp_path))
    out = tmp_path / "out"
    stale_corpus = (out / "corpus.jsonl").read_bytes()
    four = tmp_path / "four.txt"
    four.write_text("dog\ncat\ncar\nbus\n")
    assert _cli(tmp_path, "--classes", str(four), "--backend", "scripted", "--profile", "small",
                "--stages", "groups") == 0
    assert (f"{out} was made for other classes, synonyms, counts, questions, labelling rules or back-end: its "
            "attributes, coarse, fine, relation output is not carried forward"
            in capsys.readouterr().err)
    assert sorted(_files(out)) == ["classnames.txt", "groups.json", "manifest.json",
                                   "synonyms.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"] == ["groups"] and manifest["carried_forward"] == []
    folder = KnowledgeFolder(out)
    assert folder.classnames == ["dog", "cat", "car", "bus"]
    with pytest.raises(FileNotFoundError, match="corpus.jsonl is missing"):
        folder.corpus()
    (out / "corpus.jsonl").write_bytes(stale_corpus)  # the stale corpus put back by hand
    assert _refused(out) == f"{out}: corpus.jsonl not made with manifest.json (left from another run)"


def test_partial_rerun_for_the_same_classes_carries_the_earlier_stages(tmp_path, capsys):
    config = _config(tmp_path)
    run(config)
    out = tmp_path / "out"
    before = _files(out)
    config.stages = ("relation",)  # runs groups and relation again
    manifest = run(config)
    after = _files(out)
    assert {n: after[n] for n in after if n != "manifest.json"} == {
        n: before[n] for n in before if n != "manifest.json"}
    assert manifest["stages"] == list(STAGES)
    assert manifest["carried_forward"] == ["attributes", "coarse", "fine"]
    assert set(manifest["questions"]) == {"coarse_groups", "fine_groups", "relation"}
    assert len(KnowledgeFolder(out).corpus().texts) == sum(manifest["corpus"].values()) > 0
    capsys.readouterr()
    config.counts = build_counts("small", ["n_sentences=2"])  # other questions: nothing carried
    config.stages = ("groups",)
    manifest = run(config)
    assert manifest["stages"] == ["groups"] and manifest["carried_forward"] == []
    assert not (out / "corpus.jsonl").exists() and not (out / "attributes.json").exists()
    assert "is not carried forward" in capsys.readouterr().err


def test_reader_refuses_a_file_changed_after_the_run(tmp_path):
    run(_config(tmp_path))
    out = tmp_path / "out"
    corpus = out / "corpus.jsonl"
    original = corpus.read_bytes()
    assert KnowledgeFolder(out).corpus().texts
    corpus.write_bytes(original + b'{"text": "A stale dog.", "asked": ["dog"], "found": ["dog"], '
                                  b'"kind": "coarse", "question": "q"}\n')
    assert _refused(out) == f"{corpus} differs from the file recorded in {out / 'manifest.json'} (SHA-256)"


def test_out_folder_holding_other_files_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _cli(tmp_path, "--classes", "voc2007", "--backend", "scripted") == 2
    assert capsys.readouterr().err == (
        f"llm-knowledge: error: --out {out} holds files that are not a knowledge folder's "
        "(notes.txt); the folder is replaced as a whole: choose a new or empty folder\n")
    assert _files(out) == {"notes.txt": b"mine"}


def test_one_class_is_refused_before_any_question(tmp_path, capsys):
    one = tmp_path / "one.txt"
    one.write_text("dog\n")
    ScriptedBackend.calls = 0
    assert _cli(tmp_path, "--classes", str(one), "--backend", "scripted") == 2
    assert capsys.readouterr().err == (
        f"llm-knowledge: error: --classes {one}: 1 class (dog): the ranking loss needs at least "
        "two classes (it ranks a sentence's classes above the others)\n")
    assert ScriptedBackend.calls == 0 and not (tmp_path / "out").exists()


class OverlappingGroupsBackend(ScriptedBackend):
    """Groups that overlap, repeat classes and leave the coarse group they were asked about."""

    def answer_many(self, questions):
        for question, answer in zip(questions, super().answer_many(questions)):
            if question.kind == "coarse_groups":
                yield "Home: dog, cat, bed, dog\nPets: cat, dog, car\nStreet: car, bus, cat"
            elif question.kind == "fine_groups":
                yield "Pets: dog, cat\nMix: cat, bed, car\nRest: bed, bus"
            else:
                yield answer


def test_overlapping_group_answers_are_written_as_valid_groups(tmp_path):
    register_backend("overlapping", OverlappingGroupsBackend)
    config = _config(tmp_path)
    config.backend, config.stages = "overlapping", ("groups",)
    manifest = run(config)
    # the documented rule: a class keeps the first group that names it
    expected = {"coarse": [["dog", "cat", "bed"], ["car", "bus"]],
                "fine": [["dog", "cat"], ["car", "bus"]]}
    assert json.loads((tmp_path / "out" / "groups.json").read_text()) == expected
    assert KnowledgeFolder(tmp_path / "out").groups == expected
    assert manifest["questions"]["coarse_groups"]["unusable_by_reason"] == {
        "already_grouped": 3, "singleton_group": 1}
    assert manifest["questions"]["fine_groups"]["unusable_by_reason"] == {
        "already_grouped": 1, "not_in_question": 2, "singleton_group": 2}


def test_every_unusable_reason_is_documented():
    repo = Path(__file__).resolve().parents[1]
    source = "".join(p.read_text() for p in (repo / "llm_knowledge").rglob("*.py"))
    reasons = set(re.findall(r'rejected\["(\w+)"\]', source))
    assert {"empty", "duplicate", "not_in_list", "singleton_group"} <= reasons
    docs = (repo / "docs" / "llm_knowledge.md").read_text()
    assert sorted(r for r in reasons if f"`{r}`" not in docs) == []


# ------------------------------------------------------------------ the HTTP back-end
@contextlib.contextmanager
def _silent_server():
    """A server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop, held = threading.Event(), []

    def accept():
        while not stop.is_set():
            with contextlib.suppress(socket.timeout):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


def test_http_backend_reports_each_retry_to_a_silent_server(capsys):
    with _silent_server() as url:
        options = BackendOptions(base_url=url, connect_timeout=0.2, timeout=60, retries=2)
        started = time.monotonic()
        with pytest.raises(BackendError) as info:
            create_backend("openai", options)  # no --model: the model list, with the short timeout
        elapsed = time.monotonic() - started
        assert str(info.value).startswith(
            f"cannot reach the LLM server at {url}/models after 3 attempts (ReadTimeout")
        assert 3 <= elapsed < 7  # 3 x 0.2 s + back-off 1 + 2 s, not the 60 s read timeout
        retries = [line for line in capsys.readouterr().err.splitlines() if "retry" in line]
        assert len(retries) == 2
        for number, (line, delay) in enumerate(zip(retries, (1, 2)), 1):
            assert line.startswith(f"llm-knowledge: {url}/models: ReadTimeout")
            assert line.endswith(f"; retry {number} of 2 in {delay} s")

        # With --model too, the first question is preceded by the model list with the short
        # timeout: the silent server is reported in seconds, not after the 60 s read timeout.
        backend = create_backend("openai", dataclasses.replace(options, model="m", retries=1))
        timeout = backend._client.timeout
        assert (timeout.connect, timeout.read) == (0.2, 60)
        started = time.monotonic()
        with pytest.raises(BackendError, match=re.escape(
                f"cannot reach the LLM server at {url}/models after 2 attempts (ReadTimeout")):
            list(backend.answer_many([Q.relation("dog", "cat", 1)]))
        assert time.monotonic() - started < 4  # 2 x 0.2 s + back-off 1 s
        assert "; retry 1 of 1 in 1 s" in capsys.readouterr().err


class _FakeOpenAI(BaseHTTPRequestHandler):
    def do_GET(self):
        self._reply({"data": [{"id": model} for model in self.server.models]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._reply({"choices": [{"message": {"content": "Home: dog, cat, bed\nStreet: car, bus"}}]})

    def _reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _openai_server(models):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    server.models = models
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_fully_cached_rerun_needs_no_server(tmp_path, capsys):
    config = _config(tmp_path, retries=0, connect_timeout=0.5)
    config.backend, config.stages = "openai", ("groups",)
    with _openai_server(["m1"]) as url:
        config.options = dataclasses.replace(config.options, base_url=url)
        first = run(config)
    assert first["backend"]["model"] == "m1" and first["llm_calls"] == 2
    out = tmp_path / "out"
    made = _files(out)

    second = run(config)  # the server is gone
    assert second["llm_calls"] == 0 and second["backend"] == first["backend"]
    assert {n: v for n, v in _files(out).items() if n != "manifest.json"} == {
        n: v for n, v in made.items() if n != "manifest.json"}
    assert "model 'm1' taken from the answer cache" in capsys.readouterr().err

    before = _files(out)
    config.stages = ("attributes",)  # answers not cached need the server
    with pytest.raises(BackendError, match=re.escape(
            f"cannot reach the LLM server at {url}/models after 1 attempts (ConnectError")):
        run(config)
    assert _files(out) == before
    with _openai_server(["m2"]) as url:  # a server with another model: refused, never mixed
        config.options = dataclasses.replace(config.options, base_url=url)
        with pytest.raises(BackendError) as info:
            run(config)
    assert str(info.value) == (
        f"the answers cached for these settings are from model 'm1', but the LLM server at {url} "
        "serves ['m2']: pass --model to choose")
    assert _files(out) == before


def test_a_rerun_after_the_labelling_rules_changed_carries_nothing(tmp_path, capsys, monkeypatch):
    config = _config(tmp_path)
    run(config)
    monkeypatch.setattr(pipeline_module, "rules_digest", lambda: "0" * 64)  # as after an edit of the rules
    config.stages = ("groups",)
    manifest = run(config)
    assert manifest["carried_forward"] == [] and manifest["made_for"]["labeller_sha256"] == "0" * 64
    assert "labelling rules" in capsys.readouterr().err
