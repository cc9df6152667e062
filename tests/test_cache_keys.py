"""Every cache key changes with each thing that determines its entry and with nothing else:
the description-feature store (hiprompt/cache/text_features.py), the image-feature cache
(hiprompt/cache/image_features.py) and the LLM answer cache (llm_knowledge/cache.py)."""

from dataclasses import dataclass, field

import pytest

from hiprompt.cache import image_features
from hiprompt.cache import text_features as tf
from llm_knowledge.cache import AnswerCache, answer_key


class Backbone:
    """All that store_folder reads of a backbone: its identity."""

    def __init__(self, identity="RN50|openai|sha256:ab12|quickgelu"):
        self._identity = identity

    def identity(self):
        return self._identity


TEXTS = ["a dog sleeps.", "two cats.", "a red bus on the road."]


def text_key(texts=TEXTS, identity="RN50|openai|sha256:ab12|quickgelu", chunk=2048, cache="/c"):
    return tf.store_folder(Backbone(identity), texts, cache, chunk_size=chunk).name


# ---------------------------------------------------------------- description features
@pytest.mark.parametrize("what, changed", [
    ("backbone identity", dict(identity="RN50|openai|sha256:ab13|quickgelu")),
    ("backbone activation", dict(identity="RN50|openai|sha256:ab12|gelu")),
    ("the first text", dict(texts=["a dog sleeps!", *TEXTS[1:]])),
    ("the last text", dict(texts=[*TEXTS[:-1], "a red bus on the road"])),
    ("a text's case", dict(texts=["A dog sleeps.", *TEXTS[1:]])),
    ("the texts' order", dict(texts=[TEXTS[1], TEXTS[0], TEXTS[2]])),
    ("one text fewer", dict(texts=TEXTS[:-1])),
    ("one text more", dict(texts=[*TEXTS, ""])),
    ("an empty text more", dict(texts=["", *TEXTS])),
    ("the chunk size", dict(chunk=1024)),
])
def test_text_store_key_changes_with(what, changed):
    assert text_key(**changed) != text_key(), what


def test_text_store_key_separates_the_texts():
    assert text_key(["ab", "c"]) != text_key(["a", "bc"])
    assert text_key(["abc"]) != text_key(["ab", "c"])
    assert text_key(["a", ""]) != text_key(["a"]) != text_key(["", "a"])
    # a NUL or a backslash inside a text cannot fake a boundary
    assert text_key(["a\0b"]) != text_key(["a", "b"])
    assert text_key(["a\\", "b"]) != text_key(["a\\\0b"])
    assert text_key(["a\\0b"]) != text_key(["a\0b"])


def test_text_store_key_changes_with_the_format_version(monkeypatch):
    before = text_key()
    monkeypatch.setattr(tf, "STORE_FORMAT", tf.STORE_FORMAT + 1)
    assert text_key() != before


def test_text_store_key_depends_on_nothing_else():
    assert text_key() == text_key()  # deterministic (no time, no process state)
    assert text_key(texts=tuple(TEXTS)) == text_key()  # any sequence of the same texts
    assert text_key(cache="/elsewhere") == text_key()  # the folder's name: where it is is no part of it
    folder = tf.store_folder(Backbone(), TEXTS, "/c")
    assert folder.parent.as_posix() == "/c/text" and len(folder.name) == 24


def test_text_store_key_of_texts_without_nul_or_backslash_is_the_documented_hash():
    """The key written out: SHA-256 of identity, format, chunk size, then each text + NUL."""
    import hashlib

    digest = hashlib.sha256(b"RN50|openai|sha256:ab12|quickgelu\0format" + str(tf.STORE_FORMAT).encode()
                            + b"\0chunk2048\0" + b"".join(t.encode() + b"\0" for t in TEXTS))
    assert text_key() == digest.hexdigest()[:24]


# ---------------------------------------------------------------- image features
@dataclass
class Images:
    name: str
    image_paths: list
    transform_key: str = "square|224|bicubic|mean,std"
    extra: dict = field(default_factory=dict)  # not read by the key

    def __len__(self):
        return len(self.image_paths)


@pytest.fixture
def image_files(tmp_path):
    paths = []
    for i, size in enumerate((10, 20, 30)):
        path = tmp_path / f"img{i}.jpg"
        path.write_bytes(b"x" * size)
        paths.append(str(path))
    return paths


def image_key(paths, identity="RN50|openai|dense-pos", name="coco-val", transform="square|224|bicubic|mean,std"):
    return image_features.feature_cache_key(identity, Images(name, list(paths), transform))


def test_image_key_changes_with_identity_transform_set_paths_order_sizes_and_version(image_files, monkeypatch,
                                                                                    tmp_path):
    base = image_key(image_files)
    assert image_key(image_files, identity="RN50|openai|no-dense-pos") != base
    assert image_key(image_files, transform="resize_crop|224|bicubic|mean,std") != base
    assert image_key(image_files, name="voc-test") != base
    assert image_key(image_files[::-1]) != base
    assert image_key(image_files[:-1]) != base
    assert image_key([*image_files[:-1], str(tmp_path / "missing.jpg")]) != base
    with open(image_files[0], "ab") as handle:  # the same path, another file of another size
        handle.write(b"y")
    grown = image_key(image_files)
    assert grown != base
    monkeypatch.setattr(image_features, "FORMAT_VERSION", image_features.FORMAT_VERSION + 1)
    assert image_key(image_files) != grown


def test_image_key_separates_paths_and_fields(tmp_path):
    for name in ("ab", "c", "a", "bc"):
        (tmp_path / name).write_bytes(b"")
    ab_c = image_key([str(tmp_path / "ab"), str(tmp_path / "c")])
    a_bc = image_key([str(tmp_path / "a"), str(tmp_path / "bc")])
    assert ab_c != a_bc
    # the name and the transform are separate fields, not one string
    assert image_key([], name="x|y", transform="z") != image_key([], name="x", transform="y|z")


def test_image_key_depends_on_nothing_else(image_files):
    import os

    base = image_key(image_files)
    assert image_key(tuple(image_files)) == base
    assert image_features.feature_cache_key("RN50|openai|dense-pos", Images(
        "coco-val", list(image_files), extra={"anything": 1})) == base
    os.utime(image_files[1], (1, 1))  # modification times are left out on purpose (a copied data set)
    assert image_key(image_files) == base
    assert len(base) == 32


# ---------------------------------------------------------------- LLM answers
IDENTITY = {"backend": "llama-cpp", "model_sha256": "f" * 64, "temperature": 0.0, "max_tokens": 512}


@pytest.mark.parametrize("field_name, value", [
    ("backend", "openai"), ("model_sha256", "e" * 64), ("temperature", 0.7), ("max_tokens", 256)])
def test_answer_key_changes_with_every_identity_field(field_name, value):
    assert answer_key({**IDENTITY, field_name: value}, "list 5 attributes of dog") != answer_key(
        IDENTITY, "list 5 attributes of dog")
    # a field added (a new generation setting) changes it too
    assert answer_key({**IDENTITY, "seed": 1}, "q") != answer_key(IDENTITY, "q")


def test_answer_key_changes_with_the_prompt_and_the_sampling():
    base = answer_key(IDENTITY, "list 5 attributes of dog")
    assert answer_key(IDENTITY, "list 5 attributes of dogs") != base
    assert answer_key(IDENTITY, "list 5 attributes of dog ") != base  # whitespace is part of a prompt
    sampled = answer_key(IDENTITY, "list 5 attributes of dog", {"temperature": 0.8, "seed": 1})
    assert sampled != base
    assert answer_key(IDENTITY, "list 5 attributes of dog", {"temperature": 0.8, "seed": 2}) != sampled
    assert answer_key(IDENTITY, "list 5 attributes of dog", {"temperature": 0.9, "seed": 1}) != sampled
    # the prompt cannot spill into the identity or the sampling (one JSON document, fields apart)
    assert answer_key({"backend": "a"}, 'b"}') != answer_key({"backend": 'a", "prompt": "b'}, "")


def test_answer_key_depends_on_nothing_else(tmp_path):
    reordered = dict(reversed(list(IDENTITY.items())))
    assert answer_key(reordered, "q") == answer_key(IDENTITY, "q")  # the same identity
    assert answer_key(IDENTITY, "q", None) == answer_key(IDENTITY, "q")  # greedy answers keep their keys
    # the stored cache uses the same key wherever it lives, and answers with it
    first, second = AnswerCache(tmp_path / "one", IDENTITY), AnswerCache(tmp_path / "two", reordered)
    assert first.key("q") == second.key("q") == answer_key(IDENTITY, "q")
    first.put("q", "an answer")
    assert AnswerCache(tmp_path / "one", reordered).get("q") == "an answer"
    assert AnswerCache(tmp_path / "one", {**IDENTITY, "temperature": 0.5}).get("q") is None


def test_text_store_key_escapes_nul_and_backslash_as_documented():
    """A backslash is written as two, a NUL as backslash-zero, before each text's NUL end."""
    import hashlib

    header = b"RN50|openai|sha256:ab12|quickgelu\0format" + str(tf.STORE_FORMAT).encode() + b"\0chunk2048\0"
    assert text_key(["a\\b", "c\0d"]) == hashlib.sha256(header + b"a\\\\b\0" + b"c\\0d\0").hexdigest()[:24]


def test_answer_key_is_the_documented_hash():
    """SHA-256 of the JSON of {identity, prompt[, sampling]} with sorted keys: a change to this
    scheme would silently orphan every cached answer."""
    import hashlib
    import json

    plain = json.dumps({"identity": IDENTITY, "prompt": "q"}, sort_keys=True)
    assert answer_key(IDENTITY, "q") == hashlib.sha256(plain.encode()).hexdigest()
    sampled = json.dumps({"identity": IDENTITY, "prompt": "q", "sampling": {"seed": 1}}, sort_keys=True)
    assert answer_key(IDENTITY, "q", {"seed": 1}) == hashlib.sha256(sampled.encode()).hexdigest()


def test_image_key_is_the_documented_hash(image_files, tmp_path):
    """SHA-256 of the sorted-key JSON header, then a newline, the path, a tab and the size (-1 for a missing
    file) per image, cut to 32 hex digits: a change to this scheme would silently orphan every cached entry."""
    import hashlib
    import json

    missing = str(tmp_path / "missing.jpg")
    header = ('{"clip": "RN50|openai|dense-pos", "set": "coco-val", "transform": "square|224|bicubic|mean,std", '
              '"version": 1}')
    assert json.loads(header)["version"] == image_features.FORMAT_VERSION
    lines = "".join(f"\n{path}\t{size}" for path, size in zip([*image_files, missing], (10, 20, 30, -1)))
    digest = hashlib.sha256((header + lines).encode())
    assert image_key([*image_files, missing]) == digest.hexdigest()[:32]
