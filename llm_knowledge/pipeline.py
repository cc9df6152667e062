"""The knowledge stage end to end: ask the questions of METHOD.md §2, parse, label, write.

Stages (each adds what it needs first): `attributes` (Π1a, Π1b), `coarse` (Π2 over the
common and class attributes), `fine` (Π3 filtering, then Π2 over the kept attributes),
`groups` (Π4 coarse groups, Π4b fine groups inside each coarse group of three or more
classes; a two-class group is its own fine group) and `relation` (Π5 over pairs of classes
of one group, coarse and fine, at most `n_pairs` per group, chosen with `seed`).

Top-up: a list answer (attributes, descriptions, relations) with fewer usable items than
asked is asked again with sampling (`TopUpOptions`: temperature, at most `retries` more
attempts, each with a seed derived from `seed`, the prompt and the attempt number), and the
new items are merged in without repeats. Groups: a degenerate coarse grouping is re-asked
with sampling and otherwise replaced by embedding groups (`llm_knowledge.grouping`); the
manifest's `groups` entry says which source made them.

Every answer, top-up attempts and re-asks included, goes through the `AnswerCache` first
(keyed with the attempt's sampling), so a rerun asks nothing again and the same seeds give
the same corpus.

Sentences that repeat one of the same kind (the same text once lower-cased and with its
white space collapsed, `repeat_key`) are dropped: the first is kept, with the `asked` classes
of every repeat merged into it (in class order; `found` is its own); the manifest's
`corpus_repeats_dropped` counts them per kind.

Before the first question: the fallback's text encoder is built when the groups stage may
need it (`grouping.fallback_needed`), and `out_dir` is locked (`hiprompt.fileio.FolderLock`
on `out_dir/.lock`; a second run on the same folder stops at once naming the holder). A folder
that cannot be written (read-only, no space) is one line naming it and the reason
(`OutputFolderError`).

The folder is written whole into a new folder beside `out_dir` and then swapped in
(`hiprompt.fileio.replace_folder`). Outputs of stages that did not run this time are carried
forward from the folder already at `out_dir` only when its manifest says it was made for the
same classes, synonyms, counts, question texts, labelling rules and back-end identity
(`made_for`) and its files match the manifest; otherwise they are left out, and a line says so.
"""

import hashlib
import itertools
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Dict, List, Tuple

from tabulate import tabulate
from tqdm import tqdm

from hiprompt.data.knowledge import (
    FILES,
    MANIFEST,
    check_class_count,
    check_groups,
    verify_manifest,
    write_knowledge_folder,
)
from hiprompt.fileio import FolderBusyError, FolderLock
from hiprompt.paths import cache_root
from llm_knowledge import questions as Q
from llm_knowledge.backends import DEFAULT_BACKEND, BackendError, BackendOptions, create_backend
from llm_knowledge.cache import AnswerCache
from llm_knowledge.counts import Counts, build_counts
from llm_knowledge.grouping import (
    GroupingOptions,
    clip_text_embeddings,
    degenerate,
    embedding_groups,
    fallback_needed,
    group_encoder,
)
from llm_knowledge.labelling import Labeller, rules_digest
from llm_knowledge.parsing import Parsed, dedup_key, parse_attributes, parse_groups, parse_sentences
from llm_knowledge.synonyms import default_synonyms

STAGES = ("attributes", "coarse", "fine", "groups", "relation")
LOCK = ".lock"  # hiprompt.fileio.FolderLock's file inside --out; not a knowledge file
_CORPUS_KINDS = ("coarse", "fine", "relation")  # stage name = corpus kind
_NEEDS = {"coarse": ("attributes",), "fine": ("attributes",), "relation": ("groups",)}


def parse_stages(text: str) -> Tuple[str, ...]:
    """The stage names of a comma-separated list (a `--stages` value)."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def resolve_stages(stages) -> Tuple[str, ...]:
    """`stages` plus the stages they need, in pipeline order."""
    wanted = set()
    for stage in stages:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected some of {STAGES}")
        wanted.add(stage)
        wanted.update(_NEEDS.get(stage, ()))
    return tuple(s for s in STAGES if s in wanted)


@dataclass(frozen=True)
class TopUpOptions:
    """Top-up of short list answers: at most `retries` more attempts per question (0: none),
    sampled at `temperature`, seeded from `seed` (see `attempt_seed`)."""

    retries: int = 2
    temperature: float = 0.7
    seed: int = 0

    def __post_init__(self):
        if self.retries < 0 or self.temperature < 0:
            raise ValueError("top-up retries and temperature must be >= 0")

    def as_dict(self) -> dict:
        return {"retries": self.retries, "temperature": self.temperature, "seed": self.seed}


def attempt_seed(seed: int, prompt: str, attempt: int) -> int:
    """The sampling seed of re-ask number `attempt` (1, 2, ...) of `prompt`: fixed by `seed`,
    different for every prompt and attempt."""
    digest = hashlib.sha256(f"{seed}:{attempt}:{prompt}".encode("utf-8")).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


@dataclass
class RunConfig:
    classnames: List[str]
    out_dir: Path
    cache_dir: Path
    counts: Counts
    profile: str = "custom"
    backend: str = "chatglm-cpp"
    options: BackendOptions = field(default_factory=BackendOptions)
    stages: Tuple[str, ...] = STAGES
    synonyms: Dict[str, list] = field(default_factory=dict)
    source: str = ""  # the class set's name or the class file, for the manifest
    progress: bool = True
    top_up: TopUpOptions = field(default_factory=TopUpOptions)
    grouping: GroupingOptions = field(default_factory=GroupingOptions)


class _Asker:
    """Asks questions through the cache and keeps per-kind statistics."""

    def __init__(self, backend, cache: AnswerCache, bar):
        self.backend = backend
        self.identity_name = cache.identity.get("backend", type(backend).__name__)
        self.cache = cache
        self.bar = bar
        self.llm_calls = 0
        self.stats = defaultdict(Counter)
        self.unusable = defaultdict(Counter)

    def ask(self, questions: List[Q.Question], again: bool = False) -> List[str]:
        """The answers to `questions`, from the cache where it has them. `again`: these are
        re-asks (top-up attempts, group re-asks), counted apart as `re_asked`, `re_from_cache`
        and `re_llm_calls` (their calls are in `llm_calls` too)."""
        prefix = "re_" if again else ""
        answers: Dict[str, str] = {}
        distinct: Dict[tuple, Q.Question] = {}  # one LLM call per distinct prompt and sampling
        for question in questions:
            self.stats[question.kind][f"{prefix}asked"] += 1
            cached = self.cache.get(question.prompt, question.sampling)
            if cached is not None:
                answers[_ask_key(question)] = cached
                self.stats[question.kind][f"{prefix}from_cache"] += 1
                self.bar.update(1)
            else:
                distinct.setdefault(_ask_key(question), question)
        todo = list(distinct.values())
        replies = iter(self.backend.answer_many(todo))
        for question in todo:
            answer = next(replies, None)
            if not isinstance(answer, str):
                raise BackendError(
                    f"back-end {self.identity_name!r} gave {answer!r} instead of a text answer "
                    f"to a {question.kind} question"
                )
            self.cache.put(question.prompt, answer, question.sampling)
            answers[_ask_key(question)] = answer
            self.llm_calls += 1
            self.stats[question.kind]["llm_calls"] += 1
            if again:
                self.stats[question.kind]["re_llm_calls"] += 1
            self.bar.update(1)
        return [answers[_ask_key(q)] for q in questions]

    def record(self, question: Q.Question, parsed) -> None:
        stats = self.stats[question.kind]
        if parsed.refused:
            stats["refused"] += 1
        elif parsed.items:
            stats["answered"] += 1
        stats["items"] += len(parsed.items)
        if question.count:
            stats["shortfall"] += max(0, question.count - len(parsed.items))
        self.unusable[question.kind] += parsed.rejected  # Counter addition drops zeros

    def summary(self) -> dict:
        result = {}
        for kind in Q.KINDS:
            if kind in self.stats:
                entry = {k: self.stats[kind][k] for k in
                         ("asked", "from_cache", "llm_calls", "answered", "refused", "items",
                          "shortfall", "re_asked", "re_from_cache", "re_llm_calls",
                          "topped_up")}
                entry["unusable"] = sum(self.unusable[kind].values())
                entry["unusable_by_reason"] = dict(sorted(self.unusable[kind].items()))
                result[kind] = entry
        return result


def _ask_key(question: Q.Question) -> tuple:
    return question.prompt, json.dumps(question.sampling, sort_keys=True)


def _unique(items) -> list:
    return list(dict.fromkeys(items))


def _plan_estimate(stages, counts: Counts, n_classes: int, known: dict) -> int:
    """Questions still to ask, from the counts and what earlier stages already found."""
    n_attrs = known.get("n_attrs", n_classes * (counts.n_common + counts.n_class))
    n_groups = known.get("n_groups", max(1, -(-n_classes // 5)))
    total = 0
    if "attributes" in stages:
        total += 1 + n_classes
    if "coarse" in stages:
        total += n_attrs
    if "fine" in stages:
        total += n_classes + n_classes * counts.n_keep
    if "groups" in stages:
        total += 1 + n_groups
    if "relation" in stages:
        total += counts.n_pairs * 2 * n_groups
    return total


def _questions_digest() -> str:
    """Changes when the text of any question changes."""
    a, b = "class a", "class b"
    sample = [Q.common_attributes([a, b], 1), Q.class_attributes(a, 1), Q.describe(a, "size", 1),
              Q.filter_attributes(a, ["size"], 1), Q.coarse_groups([a, b]), Q.fine_groups([a, b]),
              Q.relation(a, b, 1)]
    return hashlib.sha256("\n".join(q.prompt for q in sample).encode("utf-8")).hexdigest()


class OutputFolderError(ValueError):
    """The knowledge folder cannot be written: another run holds it, or the file system
    refuses (read-only, no space, no permission). One line naming the folder and why."""


def _cannot_write(out: Path, error: OSError) -> OutputFolderError:
    """One line naming `out` (not a hidden file inside or beside it) and the system's reason."""
    reason = os.strerror(error.errno) if error.errno else (error.strerror or str(error))
    return OutputFolderError(f"cannot write the knowledge folder {out}: {reason}; choose another --out")


class _OutLock:
    """`FolderLock` on `out` (its `.lock`), taken before the first question and held until the
    new folder is swapped in (the lock file stays in the old folder, which the swap removes, so
    it never enters the finished folder). A folder made only to hold the lock is removed again
    when the run fails."""

    def __init__(self, out: Path):
        self.out = out
        self.made = not out.exists()
        try:
            self.lock = FolderLock(out, "knowledge folder").__enter__()
        except FolderBusyError as error:
            raise OutputFolderError(str(error)) from None
        except OSError as error:
            raise _cannot_write(out, error) from None

    def release(self, ok: bool) -> None:
        if not ok and self.made:
            try:
                if sorted(os.listdir(self.out)) == [LOCK]:
                    os.unlink(self.out / LOCK)
                    os.rmdir(self.out)
            except OSError:
                pass  # left as an empty folder, which a later run takes as a new one
        self.lock.__exit__(None, None, None)


def repeat_key(text: str) -> str:
    """Two sentences with the same key repeat each other: case and white space ignored."""
    return " ".join(text.lower().split())


def _check_out_dir(out: Path) -> None:
    """`out` is replaced as a whole: refuse a file, or a folder holding other files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in FILES + (MANIFEST, LOCK)
                       and not (p.name.startswith(".") and p.name.endswith(".tmp")))
        if other:
            raise ValueError(
                f"--out {out} holds files that are not a knowledge folder's ({', '.join(other[:5])}"
                f"{' ...' if len(other) > 5 else ''}); the folder is replaced as a whole: choose a "
                "new or empty folder"
            )


class KnowledgeRun:
    def __init__(self, config: RunConfig, backend=None):
        if not config.classnames:
            raise ValueError("no class names given")
        duplicates = sorted(n for n, k in Counter(config.classnames).items() if k > 1)
        if duplicates:
            raise ValueError(f"class names repeat: {duplicates}")
        check_class_count(config.classnames, f"--classes {config.source or 'list'}")
        _check_out_dir(Path(config.out_dir))
        self.config = config
        self.stages = resolve_stages(config.stages)
        self.labeller = Labeller(config.classnames, config.synonyms)
        self._lock = _OutLock(Path(config.out_dir))  # before the first question
        try:
            # The grouping fallback's encoder, before the first question: a run that may need
            # it and cannot have it stops now rather than after every question was asked.
            self.group_clip = (group_encoder(config.grouping) if "groups" in self.stages
                               and fallback_needed(config.grouping, len(config.classnames)) else None)
            self.backend = backend or create_backend(
                config.backend, _with_cache_dir(config.options, config.cache_dir)
            )
            self.identity = self.backend.identity()
            self.cache = AnswerCache(Path(config.cache_dir), self.identity)
        except BaseException:
            self._lock.release(ok=False)
            raise
        self.corpus: List[dict] = []
        self._first_of: Dict[tuple, dict] = {}  # (kind, repeat_key) -> the record kept
        self.repeats = Counter()  # kind -> sentences dropped as repeats
        self.attributes = {"common": [], "per_class": {}, "filtered": {}}
        self.groups = {"coarse": [], "fine": []}
        self.group_report = {"source": None, "degenerate": []}  # manifest["groups"]
        self.synonyms = {c: list(config.synonyms.get(c, [])) for c in config.classnames}  # synonyms.json
        self.made_for = {
            "classnames": list(config.classnames),
            "synonyms_sha256": hashlib.sha256(
                json.dumps(self.synonyms, sort_keys=True).encode("utf-8")).hexdigest(),
            "counts": config.counts.as_dict(),
            "questions_sha256": _questions_digest(),
            "labeller_sha256": rules_digest(),
            "backend": self.identity,
            "top_up": config.top_up.as_dict(),
            "grouping": config.grouping.as_dict(),
        }

    # -- stages -------------------------------------------------------------------------

    def _attributes(self, asker):
        counts, classes = self.config.counts, self.config.classnames
        questions = [Q.common_attributes(classes, counts.n_common)]
        questions += [Q.class_attributes(c, counts.n_class) for c in classes]
        for question, parsed in zip(questions, self._ask_lists(asker, questions, parse_attributes)):
            if question.kind == "common_attributes":
                self.attributes["common"] = parsed.items
            else:
                self.attributes["per_class"][question.classes[0]] = parsed.items

    def _candidates(self, label) -> list:
        return _unique(self.attributes["common"] + self.attributes["per_class"].get(label, []))

    def _describe(self, asker, attributes_of: dict, kind: str):
        counts = self.config.counts
        questions = [
            Q.describe(label, attribute, counts.n_sentences)
            for label in self.config.classnames
            for attribute in attributes_of.get(label, [])
        ]
        self._sentences(asker, questions, kind)

    def _ask_lists(self, asker, questions, parse) -> List[Parsed]:
        """Ask list questions, top up the short answers (see the module docstring) and record
        each; returns the merged usable items of each question, in question order."""
        results = [parse(answer, q.count) for q, answer in zip(questions, asker.ask(questions))]
        top_up = self.config.top_up
        for attempt in range(1, top_up.retries + 1):
            short = [i for i, (q, parsed) in enumerate(zip(questions, results))
                     if q.count and len(parsed.items) < q.count]
            if not short:
                break
            asker.bar.total += len(short)
            again = [questions[i].resampled(
                top_up.temperature, attempt_seed(top_up.seed, questions[i].prompt, attempt))
                for i in short]
            for i, answer in zip(short, asker.ask(again, again=True)):
                added = _merge(results[i], parse(answer), questions[i].count)
                asker.stats[questions[i].kind]["topped_up"] += added
        for question, parsed in zip(questions, results):
            asker.record(question, parsed)
        return results

    def _sentences(self, asker, questions, kind: str):
        order = {label: i for i, label in enumerate(self.config.classnames)}
        for question, parsed in zip(questions, self._ask_lists(asker, questions, parse_sentences)):
            for text in parsed.items:
                first = self._first_of.get((kind, repeat_key(text)))
                if first is not None:  # a repeat: its classes join the first's
                    self.repeats[kind] += 1
                    first["asked"] = sorted(set(first["asked"]) | set(question.classes), key=order.get)
                    continue
                record = {
                    "text": text,
                    "asked": list(question.classes),
                    "found": self.labeller.find(text),
                    "kind": kind,
                    "question": question.prompt,
                }
                self._first_of[(kind, repeat_key(text))] = record
                self.corpus.append(record)

    def _filter(self, asker):
        counts = self.config.counts
        questions = [
            Q.filter_attributes(label, self._candidates(label), counts.n_keep)
            for label in self.config.classnames
            if self._candidates(label)
        ]
        for question, answer in zip(questions, asker.ask(questions)):
            parsed = parse_attributes(answer)
            allowed = set(question.attributes)
            kept = [a for a in parsed.items if a in allowed][: question.count]
            parsed.rejected["not_in_list"] += sum(1 for a in parsed.items if a not in allowed)
            parsed.rejected["surplus"] += sum(1 for a in parsed.items if a in allowed) - len(kept)
            parsed.items = kept
            asker.record(question, parsed)
            self.attributes["filtered"][question.classes[0]] = kept

    def _coarse_groups(self, asker) -> str:
        """Ask Π4 (re-asking a degenerate answer when the source is `auto`); sets the coarse
        groups and returns the source that made them, or `embedding` when none would do."""
        classes, options = self.config.classnames, self.config.grouping
        question = Q.coarse_groups(classes)
        (answer,) = asker.ask([question])
        parsed = parse_groups(answer, self.labeller, classes)
        asker.record(question, parsed)
        self.groups["coarse"] = parsed.items
        reason = degenerate(parsed.items, classes, options)
        if options.source == "llm" or reason is None:
            return "llm"
        self.group_report["degenerate"].append(reason)
        for attempt in range(1, options.retries + 1):
            again = question.resampled(options.temperature,
                                       attempt_seed(self.config.counts.seed, question.prompt, attempt))
            asker.bar.total += 1
            (answer,) = asker.ask([again], again=True)
            parsed = parse_groups(answer, self.labeller, classes)
            reason = degenerate(parsed.items, classes, options)
            if reason is None:
                self.groups["coarse"] = parsed.items
                return "llm-retry"
            self.group_report["degenerate"].append(reason)
        return "embedding"

    def _groups(self, asker):
        classes, options = self.config.classnames, self.config.grouping
        source = "embedding" if options.source == "embedding" else self._coarse_groups(asker)
        self.group_report["source"] = source
        if source == "embedding":
            embeddings = clip_text_embeddings(classes, self.group_clip, options.template)  # [C, D]
            self.groups = embedding_groups(classes, embeddings, options.coarse_size,
                                           options.fine_size)
            self.group_clip = None  # done with it
            return
        self.group_clip = None
        split = [g for g in self.groups["coarse"] if len(g) >= 3]
        questions = [Q.fine_groups(g) for g in split]
        fine = []
        for question, answer in zip(questions, asker.ask(questions)):
            parsed = parse_groups(answer, self.labeller, question.classes)
            asker.record(question, parsed)
            fine.extend(parsed.items)
        fine.extend(g for g in self.groups["coarse"] if len(g) == 2)
        order = {label: i for i, label in enumerate(classes)}
        self.groups["fine"] = sorted(fine, key=lambda g: order[g[0]])

    def _pairs(self) -> list:
        pairs = []
        for group in self.groups["coarse"] + self.groups["fine"]:
            combos = list(itertools.combinations(group, 2))
            if len(combos) > self.config.counts.n_pairs:
                chooser = random.Random(f"{self.config.counts.seed}:{'|'.join(group)}")
                combos = sorted(chooser.sample(combos, self.config.counts.n_pairs),
                                key=combos.index)
            pairs.extend(combos)
        return _unique(pairs)

    def _relation(self, asker):
        n = self.config.counts.n_relation
        questions = [Q.relation(a, b, n) for a, b in self._pairs()]
        self._sentences(asker, questions, "relation")

    # -- the run ------------------------------------------------------------------------

    def run(self) -> dict:
        ok = False
        try:
            manifest = self._run()
            ok = True
            return manifest
        finally:
            self._lock.release(ok)

    def _run(self) -> dict:
        config, counts = self.config, self.config.counts
        started = time.time()
        n_classes = len(config.classnames)
        bar = tqdm(total=_plan_estimate(self.stages, counts, n_classes, {}), unit="q",
                   desc="LLM questions", disable=not config.progress, dynamic_ncols=True)
        asker = _Asker(self.backend, self.cache, bar)
        known = {}

        def replan(remaining_stages):
            bar.total = bar.n + _plan_estimate(remaining_stages, counts, n_classes, known)
            bar.refresh()

        with bar:
            for index, stage in enumerate(self.stages):
                replan(self.stages[index:])
                if stage == "attributes":
                    self._attributes(asker)
                    known["n_attrs"] = sum(len(self._candidates(c)) for c in config.classnames)
                elif stage == "coarse":
                    self._describe(asker, {c: self._candidates(c) for c in config.classnames},
                                   "coarse")
                elif stage == "fine":
                    self._filter(asker)
                    replan(self.stages[index + 1:])
                    bar.total += sum(len(v) for v in self.attributes["filtered"].values())
                    self._describe(asker, self.attributes["filtered"], "fine")
                elif stage == "groups":
                    self._groups(asker)
                    known["n_groups"] = len(self.groups["coarse"])
                elif stage == "relation":
                    self._relation(asker)
            bar.total = bar.n
            bar.refresh()
        manifest = self._write(asker, time.time() - started)
        if config.progress:
            print(format_summary(manifest))
        return manifest

    def _carry_forward(self) -> list:
        """Take the outputs of stages that did not run now from the folder at `out_dir` when
        it was made for the same `made_for` and its files match its manifest (see the module
        docstring); returns the stages carried, and prints why others were left out."""
        out = Path(self.config.out_dir)
        try:
            manifest = verify_manifest(out)
        except ValueError as error:
            print(f"llm-knowledge: nothing carried forward from {out}: {error}", file=sys.stderr)
            return []
        if manifest is None:
            return []
        earlier = [s for s in STAGES if s in manifest.get("stages", []) and s not in self.stages]
        if earlier and manifest.get("made_for") != self.made_for:
            print(f"llm-knowledge: {out} was made for other classes, synonyms, counts, questions, "
                  f"labelling rules or back-end: its {', '.join(earlier)} output is not carried forward",
                  file=sys.stderr)
            return []
        if {"attributes", "fine"} & set(earlier):
            attributes = json.loads((out / "attributes.json").read_text(encoding="utf-8"))
            if "attributes" in earlier:
                self.attributes["common"] = attributes["common"]
                self.attributes["per_class"] = attributes["per_class"]
            if "fine" in earlier:
                self.attributes["filtered"] = attributes["filtered"]
        if "groups" in earlier:
            self.groups = json.loads((out / "groups.json").read_text(encoding="utf-8"))
            self.group_report = manifest.get("groups", self.group_report)
        kinds = [k for k in _CORPUS_KINDS if k in earlier]
        if kinds:
            with open(out / "corpus.jsonl", encoding="utf-8") as handle:
                self.corpus += [r for r in map(json.loads, handle) if r["kind"] in kinds]
            self.corpus.sort(key=lambda r: _CORPUS_KINDS.index(r["kind"]))  # stable
            dropped = manifest.get("corpus_repeats_dropped", {})
            for kind in kinds:
                self.repeats[kind] += dropped.get(kind, 0)
        return earlier

    def _write(self, asker, seconds: float) -> dict:
        config, out = self.config, Path(self.config.out_dir)
        carried = self._carry_forward()
        stages = [s for s in STAGES if s in self.stages or s in carried]
        if "groups" in stages:
            check_groups(self.groups, config.classnames, "groups made by the LLM stage")
        manifest = {
            "classes": config.source,
            "n_classes": len(config.classnames),
            "backend": self.identity,
            "profile": config.profile,
            "counts": config.counts.as_dict(),
            "stages": stages,
            "carried_forward": carried,
            "made_for": self.made_for,
            "questions": asker.summary(),
            "llm_calls": asker.llm_calls,
            "corpus": dict(Counter(r["kind"] for r in self.corpus)),
            "corpus_repeats_dropped": {k: self.repeats[k] for k in _CORPUS_KINDS if k in stages},
            "top_up": {"calls": sum(s["re_llm_calls"] for k, s in asker.stats.items()
                                    if k not in ("coarse_groups", "fine_groups")),
                       "asked": sum(s["re_asked"] for k, s in asker.stats.items()
                                    if k not in ("coarse_groups", "fine_groups")),
                       "items_added": sum(s["topped_up"] for s in asker.stats.values())},
            **({"groups": self.group_report} if "groups" in stages else {}),
            "cache": str(self.cache.path),
            "time_s": round(seconds, 3),
        }
        try:
            return write_knowledge_folder(
                out, config.classnames, self.synonyms, manifest,
                attributes=self.attributes if "attributes" in stages else None,
                groups=self.groups if "groups" in stages else None,
                corpus=self.corpus if set(_CORPUS_KINDS) & set(stages) else None)
        except OSError as error:
            raise _cannot_write(out, error) from None


def _merge(merged: Parsed, extra: Parsed, count: int) -> int:
    """Add the items of `extra` that `merged` lacks, up to `count` items in all; what is
    left out is counted by reason. Returns how many were added."""
    seen = {dedup_key(item) for item in merged.items}
    added = 0
    merged.rejected += extra.rejected
    for item in extra.items:
        key = dedup_key(item)
        if key in seen:
            merged.rejected["duplicate"] += 1
        elif len(merged.items) >= count:
            merged.rejected["surplus"] += 1
        else:
            seen.add(key)
            merged.items.append(item)
            added += 1
    return added


def _with_cache_dir(options: BackendOptions, cache_dir) -> BackendOptions:
    return replace(options, cache_dir=str(cache_dir))


def format_summary(manifest: dict) -> str:
    """The end-of-run table: questions, answers and unusable items per question type."""
    rows = []
    for kind, s in manifest["questions"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in s["unusable_by_reason"].items()) or "-"
        rows.append([kind, s["asked"], s["from_cache"], s["llm_calls"], s["re_asked"],
                     s["topped_up"], s["answered"], s["refused"], s["items"], s["shortfall"],
                     s["unusable"], reasons])
    table = tabulate(rows, headers=["question", "asked", "cached", "LLM calls", "re-asked",
                                    "topped up", "answered", "refused", "items", "short",
                                    "unusable", "why unusable"])
    corpus = ", ".join(f"{k} {v}" for k, v in manifest["corpus"].items()) or "none"
    repeats = manifest.get("corpus_repeats_dropped", {})
    if repeats:
        corpus += " (repeats dropped: " + ", ".join(f"{k} {v}" for k, v in repeats.items()) + ")"
    carried = (f"; carried forward from the earlier folder: {', '.join(manifest['carried_forward'])}"
               if manifest.get("carried_forward") else "")
    groups = (f"; groups made by: {manifest['groups']['source']}"
              if manifest.get("groups", {}).get("source") else "")
    return (f"{table}\ncorpus sentences: {corpus}; LLM calls: {manifest['llm_calls']} "
            f"(top-up {manifest['top_up']['calls']}); time: {manifest['time_s']:.1f} s"
            f"{groups}{carried}")


def run(config: RunConfig, backend=None) -> dict:
    """Run the knowledge stage for `config`; returns the manifest (also written to
    `config.out_dir/manifest.json`). `backend` overrides the one named in `config`."""
    return KnowledgeRun(config, backend).run()


def build_knowledge(classes, out_dir, *, backend: str = DEFAULT_BACKEND, model: str = "",
                    profile: str = "paper", counts=(), stages=STAGES, cache_dir=None, synonyms=None,
                    source: str = "", progress: bool = True, top_up: TopUpOptions = TopUpOptions(),
                    grouping: GroupingOptions = GroupingOptions(), **options) -> dict:
    """The knowledge stage from Python, as `llm-knowledge` runs it: writes the knowledge folder
    `out_dir` for the label names `classes` and returns its manifest.

    backend, model: who answers (`llm_knowledge.backends`). profile, counts: a named set of
    counts and "NAME=N" overrides (`llm_knowledge.counts`). stages: those to run (the ones
    they need are added). cache_dir: the answer cache (default `$HIPROMPT_CACHE/llm`).
    synonyms: {label: [synonym, ...]} for labelling (default: the built-in lists, those of
    the built-in class set `source` names). source: the class set's name or file, recorded in
    the manifest. progress: the progress bar and summary table. options: any other field of
    `BackendOptions` (max_tokens, temperature, seed, n_ctx, base_url, ...)."""
    known = {f.name for f in fields(BackendOptions)} - {"model", "cache_dir"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown back-end options {unknown}: expected some of {sorted(known)}")
    classes = list(classes)
    cache_dir = Path(cache_dir).expanduser() if cache_dir else cache_root() / "llm"
    return run(RunConfig(
        classnames=classes, out_dir=Path(out_dir), cache_dir=cache_dir, counts=build_counts(profile, counts),
        profile=profile, backend=backend,
        options=BackendOptions(model=model, cache_dir=str(cache_dir), **options),
        stages=tuple(stages), synonyms=default_synonyms(classes, source) if synonyms is None else synonyms,
        source=source, progress=progress, top_up=top_up, grouping=grouping,
    ))


__all__ = ["OutputFolderError", "RunConfig", "STAGES", "TopUpOptions", "build_knowledge", "format_summary",
           "parse_stages", "repeat_key", "resolve_stages", "run"]
