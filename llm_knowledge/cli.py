"""`llm-knowledge` / `python -m llm_knowledge`: class names in, training knowledge out."""

import argparse
import json
import sys
from pathlib import Path

from hiprompt.classnames import BUILTIN_CLASS_SETS, read_classes
from hiprompt.fileio import FolderBusyError, WriteError
from llm_knowledge.backends import DEFAULT_BACKEND, BackendError, BackendOptions, backend_names
from llm_knowledge.counts import PROFILES, Counts
from llm_knowledge.grouping import CHOICES as GROUP_CHOICES
from llm_knowledge.grouping import GroupingOptions
from llm_knowledge.pipeline import STAGES, TopUpOptions, build_knowledge, parse_stages

_DEFAULTS = BackendOptions()
_TOP_UP = TopUpOptions()
_GROUPING = GroupingOptions()


def read_synonyms(path: str, classes) -> dict:
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8-sig"))  # a byte-order mark is no error
    except (OSError, ValueError) as error:
        raise ValueError(f"--synonyms {path}: cannot read JSON: {error}") from None
    if not isinstance(table, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in table.values()
    ):
        raise ValueError(f"--synonyms {path}: expected {{class: [synonym, ...]}}")
    unknown = sorted(set(table) - set(classes))
    if unknown:
        raise ValueError(f"--synonyms {path}: keys {unknown} are not among the classes")
    return {label: list(table.get(label, [])) for label in classes}


def build_parser() -> argparse.ArgumentParser:
    counts_help = "; ".join(
        f"{name}: " + ", ".join(f"{k}={v}" for k, v in counts.as_dict().items())
        for name, counts in PROFILES.items()
    )
    parser = argparse.ArgumentParser(
        prog="llm-knowledge",
        description=(
            "Ask an LLM the knowledge questions of the paper (common and class attributes, "
            "descriptions, attribute filtering, scene groups, relationships) for a list of "
            "classes, and write the folder the prompt trainer reads: classnames.txt, "
            "attributes.json, groups.json, corpus.jsonl, synonyms.json, manifest.json. "
            "Every answer is cached: a rerun asks nothing again, a killed run resumes."
        ),
        epilog=f"count profiles: {counts_help}. See docs/llm_knowledge.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    what = parser.add_argument_group("what to ask")
    what.add_argument("--classes", required=True,
                      help=f"a built-in class set ({', '.join(BUILTIN_CLASS_SETS)}) or a text "
                           "file with one class name per line")
    what.add_argument("--synonyms", default=None,
                      help="JSON file {class: [synonym, ...]} for labelling sentences "
                           "(default: the built-in lists)")
    what.add_argument("--profile", default="paper", choices=sorted(PROFILES),
                      help="named set of counts")
    what.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="NAME=N",
                      help=f"override one count, repeatable; NAME is one of "
                           f"{', '.join(Counts.__dataclass_fields__)}")
    what.add_argument("--stages", default=",".join(STAGES), type=parse_stages,
                      help="comma-separated stages to run (the stages they need are added)")
    where = parser.add_argument_group("where")
    where.add_argument("--out", required=True,
                       help="output folder for this class set (locked while written: a second run on "
                            "it stops at once; replaced as a whole)")
    where.add_argument("--cache-dir", default=None,
                       help="answer cache folder (default: $HIPROMPT_CACHE/llm, see "
                            "hiprompt.paths.cache_root)")
    llm = parser.add_argument_group("back-end")
    llm.add_argument("--backend", default=DEFAULT_BACKEND, choices=backend_names(),
                     help="who answers")
    llm.add_argument("--model", default=_DEFAULTS.model,
                     help="model file (chatglm-cpp: GGML .bin; llama-cpp: .gguf) or the "
                          "server's model name (openai; default: the one model cached for these "
                          "settings, else the first the server lists)")
    llm.add_argument("--max-tokens", type=int, default=_DEFAULTS.max_tokens,
                     help="new tokens per answer")
    llm.add_argument("--temperature", type=float, default=_DEFAULTS.temperature,
                     help="0 decodes greedily (reproducible)")
    llm.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="sampling seed")
    llm.add_argument("--n-ctx", type=int, default=_DEFAULTS.n_ctx,
                     help="context length of a local model")
    llm.add_argument("--base-url", default=_DEFAULTS.base_url,
                     help="OpenAI-compatible server (openai back-end)")
    llm.add_argument("--api-key-env", default=_DEFAULTS.api_key_env,
                     help="environment variables tried for the API key, comma-separated")
    llm.add_argument("--concurrency", type=int, default=_DEFAULTS.concurrency,
                     help="requests in flight (openai back-end)")
    llm.add_argument("--timeout", type=float, default=_DEFAULTS.timeout,
                     help="read timeout: seconds without a byte of an answer (openai back-end)")
    llm.add_argument("--connect-timeout", type=float, default=_DEFAULTS.connect_timeout,
                     help="seconds to connect, and to get the model list (openai back-end)")
    llm.add_argument("--retries", type=int, default=_DEFAULTS.retries,
                     help="retries with back-off 1, 2, 4, ... s (at most 30 s), each reported; a "
                          "request gives up after (retries + 1) x (connect timeout + timeout) + "
                          "back-off seconds (openai back-end)")
    top_up = parser.add_argument_group(
        "top-up", "a list answer with fewer usable items than asked is asked again with "
                  "sampling, and the new items are merged in without repeats")
    top_up.add_argument("--top-up-retries", type=int, default=_TOP_UP.retries,
                        help="more attempts per short answer (0: no top-up)")
    top_up.add_argument("--top-up-temperature", type=float, default=_TOP_UP.temperature,
                        help="sampling temperature of the attempts")
    top_up.add_argument("--top-up-seed", type=int, default=_TOP_UP.seed,
                        help="seed from which each attempt's sampling seed is derived")
    groups = parser.add_argument_group(
        "groups", "a degenerate scene grouping (one group of nearly all classes, or most "
                  "classes ungrouped) is asked again with sampling, else made from the frozen "
                  "CLIP text encoder's features of the hand-crafted prompts")
    groups.add_argument("--group-source", default=_GROUPING.source, choices=GROUP_CHOICES,
                        help="auto: the LLM, re-asked, then embeddings; llm: the LLM's first "
                             "answer; embedding: embeddings only (auto with 8 classes or more and "
                             "embedding check the encoder before the first question)")
    groups.add_argument("--group-retries", type=int, default=_GROUPING.retries,
                        help="re-asks of a degenerate grouping (auto)")
    groups.add_argument("--group-backbone", default=_GROUPING.backbone,
                        help="CLIP model of the embedding groups (as MODEL.BACKBONE.NAME)")
    groups.add_argument("--group-weights", default=_GROUPING.weights,
                        help="its weights: open_clip tag, local checkpoint file, or packaged "
                             "(as MODEL.BACKBONE.WEIGHTS)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar and no summary table")
    return parser


def knowledge_from_args(args) -> dict:
    """Run `build_knowledge` with the parsed arguments; returns the manifest."""
    classes, source = read_classes(args.classes)
    return build_knowledge(
        classes, args.out, backend=args.backend, model=args.model, profile=args.profile, counts=args.overrides,
        stages=args.stages, cache_dir=args.cache_dir,
        synonyms=read_synonyms(args.synonyms, classes) if args.synonyms else None, source=source,
        progress=not args.no_progress,
        top_up=TopUpOptions(retries=args.top_up_retries, temperature=args.top_up_temperature,
                            seed=args.top_up_seed),
        grouping=GroupingOptions(source=args.group_source, retries=args.group_retries,
                                 backbone=args.group_backbone, weights=args.group_weights),
        max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed, n_ctx=args.n_ctx,
        base_url=args.base_url, api_key_env=args.api_key_env, concurrency=args.concurrency,
        timeout=args.timeout, connect_timeout=args.connect_timeout, retries=args.retries,
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        manifest = knowledge_from_args(args)
    except (ValueError, KeyError, BackendError, WriteError, FolderBusyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"llm-knowledge: error: {message}", file=sys.stderr)
        return 2
    groups = f", groups: {manifest['groups']['source']}" if manifest.get("groups") else ""
    print(f"wrote {args.out} ({sum(manifest['corpus'].values())} sentences, "
          f"{manifest['llm_calls']} LLM calls, {manifest['top_up']['calls']} of them top-up"
          f"{groups})")
    return 0
