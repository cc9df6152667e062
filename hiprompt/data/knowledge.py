"""Reader of a knowledge folder written by `llm_knowledge` (the contract with training).

    classnames.txt   one label name per line, each once; at least two classes (read by
                     `hiprompt.classnames.read_class_list`: blank and `#` lines skipped)
    groups.json      {"coarse": [[cls, ...], ...], "fine": [[cls, ...], ...]}: names from
                     classnames.txt, each at most once per level, every fine group inside
                     one coarse group
    corpus.jsonl     {"text", "asked": [cls], "found": [cls], "kind": coarse|fine|relation|caption, "question"}
    manifest.json    written last by `llm_knowledge`; its `files` holds the SHA-256 of every
                     other file, and a folder whose files disagree with it is refused (a
                     folder without manifest.json, made by hand, is read as it is)

A malformed file is an error naming the file, the line or group, and what was expected.
Corpus lines that are well formed but not used are counted by reason (`DROP_REASONS`).
"""

import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiprompt.classnames import read_class_list
from hiprompt.fileio import atomic_write_json, atomic_write_text, file_sha256, new_folder_beside, replace_folder

KINDS = ("coarse", "fine", "relation", "caption")  # caption: image captions (llm_knowledge.captions)
LABEL_POLICIES = ("asked", "found", "both")
LEVELS = ("coarse", "fine")
FILES = ("classnames.txt", "attributes.json", "groups.json", "corpus.jsonl", "synonyms.json")
MANIFEST = "manifest.json"
# Why a well-formed corpus line is not trained on.
DROP_REASONS = (
    "kind_not_selected",  # its kind is not in DATASET.TEXT.KIND
    "unknown_kind",  # its kind is none of KINDS
    "empty_text",  # its text is blank
    "no_label",  # none of its classes (by DATASET.TEXT.LABELS) is among the classes trained
)


@dataclass
class TextCorpus:
    """Sentences with multi-hot labels over `classnames`; `dropped`: lines not used, by reason."""

    classnames: list
    texts: list
    labels: np.ndarray  # [N, C] float32
    kinds: list
    dropped: dict = field(default_factory=dict)


def check_class_count(classnames, where) -> None:
    """Training ranks each sentence's classes above the others: it needs two classes at least."""
    if len(classnames) < 2:
        raise ValueError(
            f"{where}: {len(classnames)} class ({', '.join(map(str, classnames)) or 'none'}): the "
            "ranking loss needs at least two classes (it ranks a sentence's classes above the others)"
        )


def _type_name(value) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def check_groups(groups, classnames, where) -> dict:
    """The content of groups.json checked against the contract; `{"coarse": [...], "fine": [...]}`
    without empty groups. Errors name `where`, the level and the group's number (from 1)."""
    expected = 'expected {"coarse": [[class, ...], ...], "fine": [[class, ...], ...]}'
    if not isinstance(groups, dict):
        raise ValueError(f"{where}: {expected}, got {_type_name(groups)}")
    unknown_keys = sorted(set(groups) - set(LEVELS))
    if unknown_keys:
        raise ValueError(f"{where}: unknown keys {unknown_keys}; {expected}")
    known = set(classnames)
    result, owner = {}, {}
    for level in LEVELS:
        value = groups.get(level, [])
        if not isinstance(value, list):
            raise ValueError(f"{where}: {level!r} must be a list of groups (lists of class names), "
                             f"got {_type_name(value)}")
        owner[level] = {}
        for number, group in enumerate(value, 1):
            name = f"{where}: {level} group {number}"
            if not isinstance(group, list) or not all(isinstance(c, str) for c in group):
                raise ValueError(f"{name} is {json.dumps(group)[:200]}: expected a list of class names (strings)")
            unknown = [c for c in group if c not in known]
            if unknown:
                raise ValueError(f"{name} {group} names classes not in classnames.txt: {unknown}")
            repeated = sorted(c for c, k in Counter(group).items() if k > 1)
            if repeated:
                raise ValueError(f"{name} {group} names {repeated} more than once")
            for label in group:
                if label in owner[level]:
                    raise ValueError(f"{where}: {label!r} is in {level} groups {owner[level][label]} and "
                                     f"{number}: a class may be in at most one group per level")
                owner[level][label] = number
        result[level] = [list(g) for g in value if g]
    for number, group in enumerate(groups.get("fine", []), 1):
        parents = sorted({owner["coarse"].get(c, 0) for c in group})
        if len(parents) > 1 or parents == [0]:
            where_each = ", ".join(
                f"{c!r} in coarse group {owner['coarse'][c]}" if c in owner["coarse"]
                else f"{c!r} in no coarse group" for c in group)
            raise ValueError(f"{where}: fine group {number} {group} is not inside one coarse group "
                             f"({where_each}): every fine group must lie inside one coarse group")
    return result


def write_knowledge_folder(out, classnames, synonyms, manifest: dict, *, groups=None, attributes=None,
                           corpus=None) -> dict:
    """Write a whole knowledge folder at `out` or nothing: the files are written into a new
    folder beside it, the manifest (`manifest` plus the files' SHA-256) last, then the folder
    is swapped in. Optional parts left as None are not written. Returns the manifest."""
    unreadable = [c for c in classnames if len(c.splitlines()) != 1 or c != c.strip() or c.startswith("#")]
    if unreadable:
        raise ValueError(f"class names {unreadable} would not read back from classnames.txt (one name a "
                         "line, stripped, not starting with #)")
    out = Path(out)
    new = new_folder_beside(out)
    try:
        atomic_write_text(new / "classnames.txt", "".join(f"{c}\n" for c in classnames))
        atomic_write_json(new / "synonyms.json", synonyms)
        if attributes is not None:
            atomic_write_json(new / "attributes.json", attributes)
        if groups is not None:
            atomic_write_json(new / "groups.json", groups)
        if corpus is not None:
            atomic_write_text(new / "corpus.jsonl", "".join(
                json.dumps(record, ensure_ascii=False) + "\n" for record in corpus))
        manifest = {**manifest, "files": {name: file_sha256(new / name) for name in FILES
                                          if (new / name).exists()}}
        atomic_write_json(new / MANIFEST, manifest)
        replace_folder(new, out)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return manifest


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM, as Notepad saves, is not JSON
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8-sig") as handle:
        return sum(1 for line in handle if line.strip())


def verify_manifest(folder):
    """The folder's manifest, after checking the files against it; None if it has none.

    A manifest with `files` ({name: SHA-256}) must list every knowledge file present, each
    with its digest; an older manifest without `files` must agree with the number of class
    names and of corpus lines. Raises ValueError naming the file that disagrees.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return None
    manifest = _read_json(path)
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object, got {_type_name(manifest)}")
    remake = (f"; the folder was changed after `python -m llm_knowledge` wrote it: make it again "
              f"with --out {folder}")
    files = manifest.get("files")
    if files is None:  # written before file digests were recorded
        checks = [("classnames.txt", manifest.get("n_classes"))]
        if isinstance(manifest.get("corpus"), dict):
            checks.append(("corpus.jsonl", sum(manifest["corpus"].values())))
        for name, expected in checks:
            if isinstance(expected, int) and (folder / name).is_file():
                actual = _count_lines(folder / name)
                if actual != expected:
                    raise ValueError(f"{folder / name} has {actual} lines but {path} records "
                                     f"{expected}{remake}")
        return manifest
    if not isinstance(files, dict) or not all(n in FILES and isinstance(d, str) for n, d in files.items()):
        raise ValueError(f"{path}: 'files' must map knowledge file names {FILES} to SHA-256 digests")
    stray = [n for n in FILES if (folder / n).exists() and n not in files]
    if stray:
        raise ValueError(f"{folder}: {', '.join(stray)} not made with {MANIFEST} (left from another run){remake}")
    for name, digest in files.items():
        file = folder / name
        if not file.is_file():
            raise ValueError(f"{path} lists {name}, which is missing{remake}")
        if file_sha256(file) != digest:
            raise ValueError(f"{file} differs from the file recorded in {path} (SHA-256){remake}")
    return manifest


def content_hash(path) -> str:
    """SHA-256 over the names and contents of the folder's knowledge files (`FILES`; not the
    manifest, whose record of time and model can change without changing what is learned).
    Two folders with equal files hash alike wherever they lie."""
    digest = hashlib.sha256()
    for name in FILES:
        file = Path(path) / name
        if file.is_file():
            digest.update(f"{name}\t{file_sha256(file)}\n".encode("utf-8"))
    return digest.hexdigest()


def _class_list(record: dict, key: str, where: str, known: set) -> list:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"{where}: {key!r} must be a list of class names, got {json.dumps(value)[:100]}")
    unknown = [c for c in value if c not in known]
    if unknown:
        raise ValueError(f"{where}: {key!r} names classes not in classnames.txt: {unknown}")
    return value


class KnowledgeFolder:
    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"knowledge folder not found: {self.path} (make one with `python -m llm_knowledge "
                "--classes coco --out DIR ...`; it must hold classnames.txt, groups.json, corpus.jsonl)"
            )
        self.manifest = verify_manifest(self.path)
        self.classnames = read_class_list(self._file("classnames.txt"))
        check_class_count(self.classnames, self.path / "classnames.txt")
        path = self._file("groups.json")
        self.groups = check_groups(_read_json(path), self.classnames, path)

    def _file(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: a knowledge folder holds classnames.txt, groups.json and corpus.jsonl")
        return path

    def corpus(self, classnames=None, kinds="all", label_policy="both") -> TextCorpus:
        """The labelled sentences, labels over `classnames` (default: the folder's own order).

        kinds: `all`, one of coarse/fine/relation, or a comma-separated list of them.
        label_policy: asked (classes the question was about), found (classes named in the
        sentence), or both (their union). Well-formed lines that are not used are counted
        in `TextCorpus.dropped` by reason (`DROP_REASONS`); malformed ones are errors.
        """
        classnames = list(classnames or self.classnames)
        missing = sorted(set(classnames) - set(self.classnames))
        if missing:
            raise ValueError(
                f"{self.path / 'classnames.txt'} lacks classes of the test set: {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''}; make the knowledge for the same class set"
            )
        check_class_count(classnames, f"{self.path}: training over")
        wanted = set(KINDS) if kinds == "all" else {k.strip() for k in kinds.split(",")}
        if not wanted <= set(KINDS):
            raise ValueError(f"DATASET.TEXT.KIND={kinds!r}: expected all or a comma list of {KINDS}")
        if label_policy not in LABEL_POLICIES:
            raise ValueError(f"DATASET.TEXT.LABELS={label_policy!r}: expected one of {LABEL_POLICIES}")
        index = {name: i for i, name in enumerate(classnames)}
        known = set(self.classnames)
        texts, rows, kinds_out, dropped = [], [], [], Counter()
        path = self._file("corpus.jsonl")
        with open(path, encoding="utf-8-sig") as handle:  # a BOM from an editor is not JSON
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}, line {number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{where}: not valid JSON ({error})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{where}: expected a JSON object with text, kind, asked, found; "
                                     f"got {_type_name(record)}")
                text, kind = record.get("text"), record.get("kind")
                if not isinstance(text, str):
                    raise ValueError(f"{where}: 'text' must be a string, got {_type_name(text)}")
                if not isinstance(kind, str):
                    raise ValueError(f"{where}: 'kind' must be one of {KINDS}, got {_type_name(kind)}")
                asked = _class_list(record, "asked", where, known)
                found = _class_list(record, "found", where, known)
                if kind not in KINDS:
                    dropped["unknown_kind"] += 1
                    continue
                if kind not in wanted:
                    dropped["kind_not_selected"] += 1
                    continue
                if not text.strip():
                    dropped["empty_text"] += 1
                    continue
                chosen = {"asked": asked, "found": found, "both": asked + found}[label_policy]
                row = np.zeros(len(classnames), dtype=np.float32)
                for name in chosen:
                    if name in index:
                        row[index[name]] = 1.0
                if not row.any():
                    dropped["no_label"] += 1
                    continue
                texts.append(text)
                rows.append(row)
                kinds_out.append(kind)
        dropped = {reason: dropped[reason] for reason in DROP_REASONS}
        if not texts:
            raise ValueError(f"{path}: no labelled sentence of kind {kinds!r} (lines not used: {dropped})")
        return TextCorpus(classnames, texts, np.stack(rows), kinds_out, dropped)


class KnowledgeText:
    """A knowledge folder (DATASET.TEXT.DIR) as a text training set: its groups and its
    sentences of DATASET.TEXT.KIND, labelled by DATASET.TEXT.LABELS, over `classnames`.
    The registered text sets (`datasets/llm_text.py`, the tagger's) are this class by name."""

    def __init__(self, cfg, classnames=None):
        folder = KnowledgeFolder(cfg.DATASET.TEXT.DIR)
        self.groups = folder.groups
        self.corpus = folder.corpus(classnames, cfg.DATASET.TEXT.KIND, cfg.DATASET.TEXT.LABELS)
        self.classnames = self.corpus.classnames
