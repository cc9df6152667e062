"""Any OpenAI-compatible chat server (vLLM, llama.cpp's server, Ollama, ...) over HTTP.

Several requests stay in flight (`concurrency` threads). A request has a connect timeout
(`connect_timeout`) separate from its read timeout (`timeout`: seconds without a byte of
the answer); it is retried with exponential back-off (1, 2, 4, ... s, at most 30 s) on
connection errors, timeouts, HTTP 408/409/429 and 5xx, and each retry is reported on
stderr. A request therefore gives up after at most
`(retries + 1) * (connect_timeout + timeout) + back-off` seconds; the model list uses
`connect_timeout` as its read timeout too.

The model: `options.model`, else the one model whose answers for these settings are in the
answer cache (`cache_dir`; the server is then asked only when an answer is missing, and
must list that model), else the first model the server lists. Before the first question it
sends, the back-end asks the server's model list with the short `connect_timeout`, so a
server that accepts connections but never answers is reported within seconds, not after a
read timeout; a fully cached run asks the server nothing. The API key, if any, is read from
the first set environment variable named in `api_key_env`.
"""

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from tqdm import tqdm

from llm_knowledge.backends.base import BackendError, sampling
from llm_knowledge.cache import cached_identities

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def _note(message: str) -> None:
    tqdm.write(f"llm-knowledge: {message}", file=sys.stderr)  # above a progress bar, if any


class OpenAIBackend:
    name = "openai"

    def __init__(self, options):
        if options.retries < 0 or options.timeout <= 0 or options.connect_timeout <= 0:
            raise BackendError(
                f"openai back-end: --retries must be >= 0 and --timeout, --connect-timeout > 0 "
                f"(got {options.retries}, {options.timeout}, {options.connect_timeout})")
        self._options = options
        self._base_url = options.base_url.rstrip("/")
        headers = {}
        for variable in options.api_key_env.split(","):
            key = os.environ.get(variable.strip())
            if key:
                headers["Authorization"] = f"Bearer {key}"
                break
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout),
            limits=httpx.Limits(max_connections=max(1, options.concurrency)),
        )
        self._lock = threading.Lock()
        self._model = options.model
        self._from_cache = False  # the model came from the answer cache, not from the server
        self._unconfirmed = True  # the server has not been asked yet (or the error it gave)
        if not self._model:
            self._model = self._cached_model()
            self._from_cache = bool(self._model)
            if self._from_cache:
                _note(f"model {self._model!r} taken from the answer cache (the only one cached for "
                      "these settings); the server is asked only for answers not cached")
            else:
                self._model = self._models()[0]
                self._unconfirmed = False

    def _request(self, method: str, path: str, payload=None, timeout=None) -> dict:
        url = f"{self._base_url}{path}"
        retries = self._options.retries
        delay = 1.0
        for attempt in range(retries + 1):
            try:
                response = self._client.request(
                    method, url, json=payload,
                    **({"timeout": timeout} if timeout is not None else {}))
            except (httpx.TransportError, httpx.TimeoutException) as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    return response.json()
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in _RETRY_STATUS:
                    raise BackendError(f"LLM server at {url} refused the request: {problem}")
            if attempt < retries:
                _note(f"{url}: {problem}; retry {attempt + 1} of {retries} in {delay:g} s")
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise BackendError(
            f"cannot reach the LLM server at {url} after {retries + 1} "
            f"attempts ({problem}); is it running, and is --base-url right?"
        )

    def _models(self) -> list:
        """The names of the models the server lists (at least one)."""
        body = self._request("GET", "/models", timeout=self._options.connect_timeout)
        models = [m.get("id") for m in body.get("data") or [] if isinstance(m, dict)]
        if not models:
            raise BackendError(f"the LLM server at {self._base_url} lists no models")
        return models

    def _settings(self) -> dict:
        options = self._options
        return {"max_tokens": options.max_tokens, "temperature": options.temperature,
                "seed": options.seed}

    def _cached_model(self) -> str:
        """The model of the answers cached for these settings, if there is exactly one."""
        models = {i.get("model") for i in cached_identities(self._options.cache_dir)
                  if i.get("backend") == self.name and i.get("settings") == self._settings()}
        return models.pop() if len(models) == 1 else ""

    def identity(self) -> dict:
        return {"backend": self.name, "model": self._model, "settings": self._settings()}

    def _confirm_model(self) -> None:
        """Before the first question to the server: the server must answer its model list
        (short timeout), and a model taken from the cache must be one it serves, or cached
        and new answers would come from different models."""
        with self._lock:
            if isinstance(self._unconfirmed, BackendError):
                raise self._unconfirmed  # once for all requests in flight
            if not self._unconfirmed:
                return
            try:
                served = self._models()
                if self._model not in served:
                    if self._from_cache:
                        raise BackendError(
                            f"the answers cached for these settings are from model {self._model!r}, "
                            f"but the LLM server at {self._base_url} serves {served}: pass --model "
                            "to choose")
                    _note(f"--model {self._model!r} is not in the server's list {served}; asking it anyway")
            except BackendError as error:
                self._unconfirmed = error
                raise
            self._unconfirmed = False

    def _answer(self, question) -> str:
        options = self._options
        temperature, seed = sampling(question, options)
        self._confirm_model()
        body = self._request(
            "POST",
            "/chat/completions",
            {
                "model": self._model,
                "messages": [{"role": "user", "content": question.prompt}],
                "temperature": temperature,
                "max_tokens": options.max_tokens,
                "seed": seed,
            },
        )
        try:
            return body["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(f"unexpected reply from {self._base_url}: {str(body)[:300]}")

    def answer_many(self, questions):
        """Answers in question order, with up to `concurrency` requests in flight."""
        questions = iter(questions)
        width = max(1, self._options.concurrency)
        with ThreadPoolExecutor(max_workers=width) as pool:
            pending = []
            for question in questions:
                pending.append(pool.submit(self._answer, question))
                if len(pending) >= width:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()
