"""ChatGLM / GLM-4 models converted to GGML by chatglm-cpp (the paper's LLM).

Answers through `Pipeline.chat` (in chatglm-cpp 0.4.2 `Pipeline.generate` is broken).
Decoding is greedy unless a temperature > 0 is asked for; chatglm-cpp's sampling has no
seed, so only greedy answers are reproducible (the cache keeps them either way).
"""

from llm_knowledge.backends.base import BackendError, file_sha256, model_file, sampling


class ChatGLMBackend:
    name = "chatglm-cpp"

    def __init__(self, options):
        try:
            import chatglm_cpp
        except ImportError as error:
            raise BackendError(
                "back-end 'chatglm-cpp' needs the chatglm-cpp package: "
                "pip install chatglm-cpp==0.4.2 (see docs/llm_knowledge.md)"
            ) from error
        if options.max_tokens >= options.n_ctx:
            raise BackendError(
                f"back-end 'chatglm-cpp': --max-tokens ({options.max_tokens}) must be below "
                f"--n-ctx ({options.n_ctx}), which holds the prompt and the answer"
            )
        self._chatglm = chatglm_cpp
        self._path = model_file(options.model, self.name)
        self._options = options
        try:
            self._pipeline = chatglm_cpp.Pipeline(str(self._path), max_length=options.n_ctx)
        except Exception as error:  # the C++ loader raises RuntimeError on a bad file
            raise BackendError(
                f"chatglm-cpp cannot load model file {str(self._path)!r}: {error}"
            ) from error
        self._sha256 = file_sha256(self._path, options.cache_dir)

    def _settings(self) -> dict:
        options = self._options
        settings = {
            "max_new_tokens": options.max_tokens,
            "max_length": options.n_ctx,
            "do_sample": options.temperature > 0,
        }
        if options.temperature > 0:
            settings["temperature"] = options.temperature
        return settings

    def identity(self) -> dict:
        return {
            "backend": self.name,
            "model_file": self._path.name,
            "model_sha256": self._sha256,
            "model_type": self._pipeline.model.config.model_type_name,
            "settings": self._settings(),
        }

    def count_tokens(self, text: str) -> int:
        return len(self._pipeline.tokenizer.encode(text, 1 << 20)) - 2  # less [gMASK] sop

    def answer_many(self, questions):
        settings = self._settings()
        for question in questions:
            temperature, _ = sampling(question, self._options)  # chatglm-cpp has no seed
            message = self._chatglm.ChatMessage(role="user", content=question.prompt)
            reply = self._pipeline.chat(
                [message],
                max_length=settings["max_length"],
                max_new_tokens=settings["max_new_tokens"],
                max_context_length=max(1, settings["max_length"] - settings["max_new_tokens"]),
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else 1.0,
            )
            yield reply.content
