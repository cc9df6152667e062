"""What every back-end shares: its options, its error type, and the model-file hash."""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hiprompt import fileio


class BackendError(RuntimeError):
    """A back-end cannot be built or cannot answer (missing package, bad model, no server)."""


@dataclass(frozen=True)
class BackendOptions:
    """Options of all back-ends; each reads the ones it needs.

    model: a model file (chatglm-cpp, llama-cpp) or the server's model name (openai; empty:
    the first model the server lists). max_tokens: new tokens per answer. temperature: 0 is
    greedy decoding. seed: sampling seed where the back-end has one. n_ctx: context length
    of local models. base_url, api_key_env, concurrency, timeout (seconds without a byte
    of the answer), connect_timeout (seconds to connect, and to get the model list),
    retries: the HTTP back-end. cache_dir: the answer cache's folder (model-file hashes are
    remembered there; the HTTP back-end looks up the cached model name there).
    """

    model: str = ""
    max_tokens: int = 2048
    temperature: float = 0.0
    seed: int = 0
    n_ctx: int = 4096
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "HIPROMPT_LLM_API_KEY,OPENAI_API_KEY"
    concurrency: int = 4
    timeout: float = 600.0
    connect_timeout: float = 10.0
    retries: int = 4
    cache_dir: Optional[str] = None


def sampling(question, options: BackendOptions) -> tuple:
    """(temperature, seed) for answering `question`: its own sampling override (a top-up or
    re-ask, `Question.temperature` / `Question.seed`) where set, else the options'."""
    temperature = getattr(question, "temperature", None)
    seed = getattr(question, "seed", None)
    return (options.temperature if temperature is None else temperature,
            options.seed if seed is None else seed)


def model_file(path: str, backend: str) -> Path:
    """`path` as a readable model file, or a `BackendError` naming it."""
    if not path:
        raise BackendError(f"back-end {backend!r} needs --model PATH (a model file)")
    file = Path(path).expanduser()
    if not file.is_file():
        raise BackendError(f"back-end {backend!r}: model file {str(file)!r} does not exist")
    if not os.access(file, os.R_OK):
        raise BackendError(f"back-end {backend!r}: model file {str(file)!r} is not readable")
    return file.resolve()


def file_sha256(path: Path, cache_dir=None) -> str:
    """The SHA-256 of a file, remembered in `<cache_dir>/model_hashes.json` by path, size
    and modification time so that a multi-GB model is hashed once."""
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    table_path = Path(cache_dir) / "model_hashes.json" if cache_dir else None
    table = {}
    if table_path and table_path.exists():
        try:
            table = json.loads(table_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            table = {}
    if key in table:
        return table[key]
    value = fileio.file_sha256(path)
    if table_path:
        table[key] = value
        fileio.atomic_write_json(table_path, table)
    return value
