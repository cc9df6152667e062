"""Any GGUF chat model through llama-cpp-python, with the model's own chat template."""

from llm_knowledge.backends.base import BackendError, file_sha256, model_file, sampling


class LlamaCppBackend:
    name = "llama-cpp"

    def __init__(self, options):
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise BackendError(
                "back-end 'llama-cpp' needs llama-cpp-python: pip install "
                "'llama-cpp-python[server]>=0.3.0' (see docs/llm_knowledge.md)"
            ) from error
        self._path = model_file(options.model, self.name)
        self._options = options
        try:
            self._llama = Llama(
                model_path=str(self._path), n_ctx=options.n_ctx, seed=options.seed, verbose=False
            )
        except Exception as error:  # llama-cpp raises ValueError on a bad file
            raise BackendError(
                f"llama-cpp cannot load model file {str(self._path)!r}: {error}"
            ) from error
        self._sha256 = file_sha256(self._path, options.cache_dir)

    def identity(self) -> dict:
        options = self._options
        return {
            "backend": self.name,
            "model_file": self._path.name,
            "model_sha256": self._sha256,
            "settings": {
                "max_tokens": options.max_tokens,
                "temperature": options.temperature,
                "seed": options.seed,
                "n_ctx": options.n_ctx,
            },
        }

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def answer_many(self, questions):
        options = self._options
        for question in questions:
            temperature, seed = sampling(question, options)
            self._llama.reset()
            result = self._llama.create_chat_completion(
                messages=[{"role": "user", "content": question.prompt}],
                temperature=temperature,
                max_tokens=options.max_tokens,
                seed=seed,
            )
            yield result["choices"][0]["message"].get("content") or ""
