"""Tolerant parsing of LLM answers into lists of attributes, sentences and groups.

Answers come as numbered lists, bullets, one long comma/semicolon line, several sentences
on one line, with preambles ("Sure! Here are ..."), repeats, the wrong number of items,
refusals and other scripts mixed in. Nothing here raises on any string: what cannot be used
is counted by reason in `Parsed.rejected` so that runs can report it.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import List

_MARKER = re.compile(r"^\s*(?:(?:\(?\d{1,3}[.):\]]|[-*\u2022\u00b7+>#]+|[a-zA-Z][.)])\s+)+")
_INLINE_NUMBER = re.compile(r"(?:^|\s)\(?\d{1,3}[.)]\s+(?=\S)")
_SENTENCE_END = re.compile(
    r"(?<=[.!?\u3002\uff01\uff1f])(?:\s+(?=[\"'A-Z])|\s*(?=[\u3400-\u9fff]))"
)
_CJK = re.compile(  # CJK punctuation, kana, ideographs, hangul, full-width forms
    r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]"
)
_LETTERS = re.compile(r"[A-Za-z]")
_REFUSAL = re.compile(
    r"\b(?:I'?m sorry|I am sorry|I apologi[sz]e|as an AI|I can(?:no|')t (?:help|assist|"
    r"provide|do|generate|comply)|I am (?:not able|unable) to|I'?m (?:not able|unable) to)\b",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|here (?:are|is)|below (?:are|is)|the following)\b",
    re.IGNORECASE,
)
_MAX_ATTRIBUTE_WORDS = 5
_MIN_SENTENCE_WORDS = 4
_MAX_SENTENCE_WORDS = 80


@dataclass
class Parsed:
    """Usable items in answer order, and the counts of what was not used, by reason."""

    items: List[str] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    refused: bool = False


def _clean(item: str) -> str:
    item = _MARKER.sub("", item)
    item = item.replace("**", "").replace("__", "").strip()
    return item.strip(" \t\"'`\u201c\u201d\u2018\u2019")


def _is_preamble(line: str) -> bool:
    line = line.strip()
    return line.endswith(":") or bool(_PREAMBLE.match(line))


def _pieces(answer: str, list_separators: bool) -> List[str]:
    """Split an answer into candidate items (before cleaning)."""
    lines = [line for line in answer.replace("\r", "\n").split("\n") if line.strip()]
    pieces = []
    for line in lines:
        head, colon, tail = line.partition(":")
        if colon and tail.strip() and _PREAMBLE.match(_clean(head)):
            line = tail  # "Here are the attributes: a, b, c"
        # "1. a 2. b 3. c" on one line
        numbered = [p for p in _INLINE_NUMBER.split(line) if p.strip()]
        if len(numbered) > 1:
            pieces.extend(numbered)
        elif list_separators and len(lines) <= 2 and re.search(r"[,;]", line):
            pieces.extend(re.split(r"\s*[,;]\s*|\s+and\s+", _MARKER.sub("", line)))
        elif list_separators:
            pieces.extend(re.split(r"\s*;\s*", line))
        else:
            pieces.extend(_SENTENCE_END.split(_MARKER.sub("", line)))
    return pieces


def dedup_key(item: str) -> str:
    """What two items must share to count as repeats (case and punctuation ignored)."""
    return re.sub(r"\W+", " ", item.lower()).strip()


def _accept(parsed: Parsed, item: str, seen: set, limit: int) -> None:
    key = dedup_key(item)
    if key in seen:
        parsed.rejected["duplicate"] += 1
    elif limit and len(parsed.items) >= limit:
        parsed.rejected["surplus"] += 1
    else:
        seen.add(key)
        parsed.items.append(item)


def parse_attributes(answer: str, limit: int = 0) -> Parsed:
    """Short attribute words or phrases, lower-cased, without repeats; at most `limit`
    (0: no limit)."""
    parsed = Parsed()
    if _REFUSAL.search(answer or ""):
        parsed.refused = True
        return parsed
    seen = set()
    for piece in _pieces(answer or "", list_separators=True):
        if _is_preamble(piece) and len(_pieces(piece.rstrip(":"), True)) <= 1:
            parsed.rejected["preamble"] += 1
            continue
        item = _clean(piece)
        head, colon, _ = item.partition(":")
        if colon and head.strip():
            item = head  # "Colour: the fur is brown" -> "colour"
        item = re.sub(r"\s*\(.*?\)\s*", " ", item)
        item = re.sub(r"[^\w\s'/-]+", " ", item).strip().lower()
        item = re.sub(r"\s+", " ", item)
        if not item:
            parsed.rejected["empty"] += 1
        elif _CJK.search(item):
            parsed.rejected["not_english"] += 1
        elif not _LETTERS.search(item):
            parsed.rejected["no_words"] += 1
        elif len(item.split()) > _MAX_ATTRIBUTE_WORDS:
            parsed.rejected["too_long"] += 1
        else:
            _accept(parsed, item, seen, limit)
    return parsed


def parse_sentences(answer: str, limit: int = 0) -> Parsed:
    """Whole sentences, without repeats; at most `limit` (0: no limit)."""
    parsed = Parsed()
    if _REFUSAL.search(answer or ""):
        parsed.refused = True
        return parsed
    seen = set()
    for piece in _pieces(answer or "", list_separators=False):
        if _is_preamble(piece):
            parsed.rejected["preamble"] += 1
            continue
        item = re.sub(r"\s+", " ", _clean(piece)).strip()
        head, colon, tail = item.partition(":")
        if colon and len(head.split()) <= 4 and len(tail.split()) >= _MIN_SENTENCE_WORDS:
            item = _clean(tail)  # "Cat and car: \"The cat ...\"" -> the quoted sentence
        words = item.split()
        if not item:
            parsed.rejected["empty"] += 1
        elif _CJK.search(item):
            parsed.rejected["not_english"] += 1
        elif not _LETTERS.search(item):
            parsed.rejected["no_words"] += 1
        elif len(words) < _MIN_SENTENCE_WORDS:
            parsed.rejected["too_short"] += 1
        elif len(words) > _MAX_SENTENCE_WORDS:
            parsed.rejected["too_long"] += 1
        else:
            _accept(parsed, item, seen, limit)
    return parsed


def parse_groups(answer: str, labeller, allowed) -> Parsed:
    """Groups of known class names, one group per line ("name: a, b, c" or "a, b, c").

    Class names are recognised with `labeller` (name, prompt name or synonym); a class keeps
    the first group that names it; groups with fewer than two classes, or with a class
    outside `allowed`, lose those classes. `items` holds lists of label names.
    """
    parsed = Parsed()
    if _REFUSAL.search(answer or ""):
        parsed.refused = True
        return parsed
    allowed = set(allowed)
    taken = set()
    for line in (answer or "").replace("\r", "\n").split("\n"):
        text = _clean(line)
        if not text:
            continue
        head, colon, tail = text.partition(":")
        members = labeller.find(tail) if colon and tail.strip() else labeller.find(text)
        if not members:
            if not _is_preamble(text):
                parsed.rejected["no_known_class"] += 1
            continue
        group = []
        for label in members:
            if label not in allowed:
                parsed.rejected["not_in_question"] += 1
            elif label in taken:
                parsed.rejected["already_grouped"] += 1
            else:
                group.append(label)
        if len(group) >= 2:
            taken.update(group)
            parsed.items.append(group)
        elif group:
            parsed.rejected["singleton_group"] += 1
    return parsed
