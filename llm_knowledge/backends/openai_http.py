"""Any OpenAI-compatible chat server (vLLM, llama.cpp's server, Ollama, ...) over HTTP.

Several requests stay in flight (`concurrency` threads); each has a timeout and is retried
with exponential back-off on connection errors, timeouts, HTTP 429 and 5xx. The API key,
if any, is read from the first set environment variable named in `api_key_env`.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from llm_knowledge.backends.base import BackendError

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend:
    name = "openai"

    def __init__(self, options):
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
            timeout=httpx.Timeout(options.timeout, connect=min(10.0, options.timeout)),
            limits=httpx.Limits(max_connections=max(1, options.concurrency)),
        )
        self._model = options.model or self._first_model()

    def _request(self, method: str, path: str, payload=None) -> dict:
        url = f"{self._base_url}{path}"
        delay = 1.0
        for attempt in range(self._options.retries + 1):
            try:
                response = self._client.request(method, url, json=payload)
            except (httpx.TransportError, httpx.TimeoutException) as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    return response.json()
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in _RETRY_STATUS:
                    raise BackendError(f"LLM server at {url} refused the request: {problem}")
            if attempt < self._options.retries:
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise BackendError(
            f"cannot reach the LLM server at {url} after {self._options.retries + 1} "
            f"attempts ({problem}); is it running, and is --base-url right?"
        )

    def _first_model(self) -> str:
        models = self._request("GET", "/models").get("data") or []
        if not models:
            raise BackendError(f"the LLM server at {self._base_url} lists no models")
        return models[0]["id"]

    def identity(self) -> dict:
        options = self._options
        return {
            "backend": self.name,
            "model": self._model,
            "settings": {
                "max_tokens": options.max_tokens,
                "temperature": options.temperature,
                "seed": options.seed,
            },
        }

    def _answer(self, prompt: str) -> str:
        options = self._options
        body = self._request(
            "POST",
            "/chat/completions",
            {
                "model": self._model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": options.temperature,
                "max_tokens": options.max_tokens,
                "seed": options.seed,
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
                pending.append(pool.submit(self._answer, question.prompt))
                if len(pending) >= width:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()
