"""Benchmark a knowledge-stage back-end: answers per minute, generated tokens per second,
and the LLM calls a second identical run makes (it should make none).

    python scripts/bench_llm.py --backend llama-cpp --model SmolLM2-135M-Instruct.Q4_1.gguf
    python scripts/bench_llm.py --backend openai --base-url http://127.0.0.1:8000/v1

The run uses a fresh temporary cache unless --cache-dir is given (then cached answers are
not timed). Tokens are counted with the back-end's own tokenizer where it has one
(`count_tokens`), otherwise estimated as 1.3 tokens per word (marked "~").
"""

import argparse
import tempfile
import time
from pathlib import Path

from llm_knowledge.backends import BackendOptions, backend_names, create_backend
from llm_knowledge.counts import PROFILES, build_counts
from llm_knowledge.pipeline import RunConfig, run
from llm_knowledge.synonyms import default_synonyms


class TimedBackend:
    """Delegates to a back-end and records answers, generated tokens and seconds spent."""

    def __init__(self, backend):
        self.backend = backend
        self.answers = 0
        self.tokens = 0
        self.seconds = 0.0
        self.exact = hasattr(backend, "count_tokens")

    def identity(self):
        return self.backend.identity()

    def answer_many(self, questions):
        start = time.perf_counter()
        for answer in self.backend.answer_many(questions):
            self.seconds += time.perf_counter() - start
            self.answers += 1
            self.tokens += (self.backend.count_tokens(answer) if self.exact
                            else round(1.3 * len(answer.split())))
            yield answer
            start = time.perf_counter()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backend", default="llama-cpp", choices=backend_names())
    parser.add_argument("--model", default="", help="model file or server model name")
    parser.add_argument("--base-url", default=BackendOptions.base_url)
    parser.add_argument("--concurrency", type=int, default=BackendOptions.concurrency)
    parser.add_argument("--classes", default="dog,cat,car", help="comma-separated class names")
    parser.add_argument("--profile", default="small", choices=sorted(PROFILES))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--stages", default="attributes,coarse,groups,relation")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder")
    args = parser.parse_args(argv)

    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="bench_llm_") as scratch:
        cache_dir = Path(args.cache_dir) if args.cache_dir else Path(scratch) / "cache"
        options = BackendOptions(model=args.model, base_url=args.base_url,
                                 concurrency=args.concurrency, max_tokens=args.max_tokens,
                                 n_ctx=args.n_ctx, cache_dir=str(cache_dir))
        backend = TimedBackend(create_backend(args.backend, options))
        config = RunConfig(
            classnames=classes, out_dir=Path(scratch) / "out", cache_dir=cache_dir,
            counts=build_counts(args.profile, args.overrides), profile=args.profile,
            backend=args.backend, options=options, stages=tuple(args.stages.split(",")),
            synonyms=default_synonyms(classes), source="bench", progress=False,
        )
        first = run(config, backend)
        second = run(config, backend)

    minutes = max(backend.seconds, 1e-9) / 60
    mark = "" if backend.exact else "~"
    print(f"back-end: {first['backend']}")
    print(f"classes: {len(classes)}, profile: {args.profile}, max tokens: {args.max_tokens}")
    print(f"first run: {first['llm_calls']} LLM calls in {backend.seconds:.1f} s of generation "
          f"({first['time_s']:.1f} s wall)")
    print(f"answers per minute: {backend.answers / minutes:.1f}")
    print(f"tokens generated: {mark}{backend.tokens}; tokens per second: "
          f"{mark}{backend.tokens / (minutes * 60):.1f}")
    print(f"second identical run: {second['llm_calls']} LLM calls")
    return 0 if second["llm_calls"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
