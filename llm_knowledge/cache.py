"""The append-only answer cache: every prompt and raw answer, keyed by who answered it.

A record is written (and synced) as soon as its answer arrives, so a run killed at any
moment loses at most the answers in flight; `JsonlLog` skips a torn last line. The key
covers the back-end's whole identity (name, model hash or server model name, generation
settings) and the prompt, so a different model or setting never reuses an answer.
"""

import hashlib
import json
from pathlib import Path
from typing import Optional

from hiprompt.fileio import JsonlLog


def answer_key(identity: dict, prompt: str, sampling: Optional[dict] = None) -> str:
    """The cache key of `prompt` answered by `identity`; `sampling` (a question's own
    temperature and seed, see `Question.sampling`) joins the key only when given, so greedy
    answers keep their keys."""
    content = {"identity": identity, "prompt": prompt}
    if sampling is not None:
        content["sampling"] = sampling
    payload = json.dumps(content, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cached_identities(cache_dir) -> list:
    """The distinct back-end identities that have answers in `<cache_dir>/answers.jsonl`."""
    seen = {}
    if cache_dir:
        for record in JsonlLog(Path(cache_dir) / "answers.jsonl").read():
            identity = record.get("identity")
            if isinstance(identity, dict):
                seen.setdefault(json.dumps(identity, sort_keys=True), identity)
    return list(seen.values())


class AnswerCache:
    """Answers of one back-end identity, stored in `<cache_dir>/answers.jsonl`."""

    def __init__(self, cache_dir, identity: dict):
        self.path = Path(cache_dir) / "answers.jsonl"
        self.identity = identity
        self._log = JsonlLog(self.path)
        self._answers = {}
        for record in self._log.read():
            if "key" in record and isinstance(record.get("answer"), str):
                self._answers.setdefault(record["key"], record["answer"])

    def key(self, prompt: str, sampling: Optional[dict] = None) -> str:
        return answer_key(self.identity, prompt, sampling)

    def get(self, prompt: str, sampling: Optional[dict] = None):
        """The cached answer to `prompt` (asked with `sampling`, if given), or None."""
        return self._answers.get(self.key(prompt, sampling))

    def put(self, prompt: str, answer: str, sampling: Optional[dict] = None) -> None:
        key = self.key(prompt, sampling)
        if key in self._answers:
            return
        record = {"key": key, "identity": self.identity, "prompt": prompt, "answer": answer}
        if sampling is not None:
            record["sampling"] = sampling
        self._log.append(record)
        self._answers[key] = answer
