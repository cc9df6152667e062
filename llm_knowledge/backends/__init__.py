"""Back-ends that answer the knowledge stage's questions, and the registry that names them.

A back-end is a class with

- a constructor taking the whole `BackendOptions` (`__init__(self, options)`), reading the
  fields it needs;

- `identity() -> dict`: JSON-serialisable; at least `backend` (its registry name), the
  model's identity (`model_sha256` of a model file, or the server's `model` name) and
  `settings` (the generation settings that change answers). Answers are cached under it.
- `answer_many(questions) -> iterable of str`: the raw answer to each `Question`
  (`llm_knowledge.questions`), in order; it may keep several requests in flight and yield
  answers as they complete in order. LLM back-ends send `question.prompt`; table-driven
  back-ends read `question.kind`, `classes`, `attribute`, `count`, `attributes`.
- optionally `count_tokens(text) -> int`, used by `scripts/bench_llm.py` for tokens/s.

`register_backend(name, target)` adds one: `target` is the class or a lazy
"module:attribute" string imported on first use. Built in: `chatglm-cpp` (default),
`llama-cpp`, `openai` (any OpenAI-compatible HTTP server) and `toy-oracle`
(`hiprompt.toyworld.oracle:ToyOracleBackend`, answers from a toy world's tables).
"""

import importlib

from llm_knowledge.backends.base import BackendError, BackendOptions

DEFAULT_BACKEND = "chatglm-cpp"

_REGISTRY = {
    "chatglm-cpp": "llm_knowledge.backends.chatglm:ChatGLMBackend",
    "llama-cpp": "llm_knowledge.backends.llamacpp:LlamaCppBackend",
    "openai": "llm_knowledge.backends.openai_http:OpenAIBackend",
    "toy-oracle": "hiprompt.toyworld.oracle:ToyOracleBackend",
}


def register_backend(name: str, target) -> None:
    """Make `name` resolve to `target` (a class, or "module:attribute" imported lazily)."""
    _REGISTRY[name] = target


def backend_names() -> list:
    return sorted(_REGISTRY)


def backend_class(name: str):
    """The class registered as `name`, importing it if it was registered lazily."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown back-end {name!r}; expected one of {backend_names()}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise BackendError(
                f"back-end {name!r} needs module {module_name!r}, which cannot be imported: "
                f"{error}"
            ) from error
        try:
            target = getattr(module, attribute)
        except AttributeError:
            raise BackendError(
                f"back-end {name!r}: module {module_name!r} has no {attribute!r}"
            ) from None
        _REGISTRY[name] = target
    return target


def create_backend(name: str, options: BackendOptions):
    """An instance of back-end `name` built from `options` (see the module docstring)."""
    return backend_class(name)(options)


__all__ = [
    "BackendError",
    "BackendOptions",
    "DEFAULT_BACKEND",
    "backend_class",
    "backend_names",
    "create_backend",
    "register_backend",
]
