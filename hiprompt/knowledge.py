"""Reader of a knowledge folder written by `llm_knowledge` (the contract with training).

    classnames.txt   one label name per line
    groups.json      {"coarse": [[cls, ...], ...], "fine": [[cls, ...], ...]}
    corpus.jsonl     {"text", "asked": [cls], "found": [cls], "kind": coarse|fine|relation, "question"}
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("coarse", "fine", "relation")
LABEL_POLICIES = ("asked", "found", "both")


@dataclass
class TextCorpus:
    """Sentences with multi-hot labels over `classnames`."""

    classnames: list
    texts: list
    labels: np.ndarray  # [N, C] float32
    kinds: list


class KnowledgeFolder:
    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"knowledge folder not found: {self.path} (make one with `python -m llm_knowledge "
                "--classes coco --out DIR ...`; it must hold classnames.txt, groups.json, corpus.jsonl)"
            )
        self.classnames = self._read_classnames()
        self.groups = self._read_groups()

    def _file(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: a knowledge folder holds classnames.txt, groups.json and corpus.jsonl")
        return path

    def _read_classnames(self) -> list:
        names = [line.strip() for line in self._file("classnames.txt").read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n]
        if not names:
            raise ValueError(f"{self.path / 'classnames.txt'} is empty: expected one class name per line")
        return names

    def _read_groups(self) -> dict:
        path = self._file("groups.json")
        try:
            groups = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        known = set(self.classnames)
        result = {}
        for level in ("coarse", "fine"):
            value = groups.get(level, [])
            if not isinstance(value, list) or not all(isinstance(g, list) for g in value):
                raise ValueError(f"{path}: key {level!r} must be a list of class-name lists")
            for group in value:
                unknown = [c for c in group if c not in known]
                if unknown:
                    raise ValueError(f"{path}: {level} group {group} names unknown classes {unknown}")
            result[level] = [list(g) for g in value if g]
        return result

    def corpus(self, classnames=None, kinds="all", label_policy="both") -> TextCorpus:
        """The labelled sentences, labels over `classnames` (default: the folder's own order).

        kinds: `all`, one of coarse/fine/relation, or a comma-separated list of them.
        label_policy: asked (classes the question was about), found (classes named in the
        sentence), or both (their union). Sentences with no label are dropped.
        """
        classnames = list(classnames or self.classnames)
        missing = sorted(set(classnames) - set(self.classnames))
        if missing:
            raise ValueError(
                f"{self.path / 'classnames.txt'} lacks classes of the test set: {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''}; make the knowledge for the same class set"
            )
        wanted = set(KINDS) if kinds == "all" else {k.strip() for k in kinds.split(",")}
        if not wanted <= set(KINDS):
            raise ValueError(f"DATASET.TEXT.KIND={kinds!r}: expected all or a comma list of {KINDS}")
        if label_policy not in LABEL_POLICIES:
            raise ValueError(f"DATASET.TEXT.LABELS={label_policy!r}: expected one of {LABEL_POLICIES}")
        index = {name: i for i, name in enumerate(classnames)}
        texts, rows, kinds_out = [], [], []
        path = self._file("corpus.jsonl")
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    text, kind = record["text"], record["kind"]
                    asked, found = record.get("asked", []), record.get("found", [])
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    raise ValueError(
                        f"{path}, line {number}: expected a JSON object with text, kind, asked, found ({error})"
                    ) from None
                if kind not in wanted:
                    continue
                chosen = {"asked": asked, "found": found, "both": list(asked) + list(found)}[label_policy]
                row = np.zeros(len(classnames), dtype=np.float32)
                for name in chosen:
                    if name in index:
                        row[index[name]] = 1.0
                if row.any():
                    texts.append(text)
                    rows.append(row)
                    kinds_out.append(kind)
        if not texts:
            raise ValueError(f"{path}: no labelled sentence of kind {kinds!r}")
        return TextCorpus(classnames, texts, np.stack(rows), kinds_out)
