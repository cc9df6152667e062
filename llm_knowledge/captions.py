"""Image captions -> a knowledge folder (the training text of TaI-DPT and of Table 1's "Image
Captions" row), labelled by the project's one labeller (`llm_knowledge.labelling`).

    python -m llm_knowledge.captions --classes coco \
        --captions annotations/captions_train2017.json --out knowledge/coco-captions

Caption files, by name (UTF-8; a byte-order mark, as Notepad or Excel writes, is skipped):
    *.json   COCO's official captions format: {"annotations": [{"image_id", "id", "caption"}, ...], ...}
    *.jsonl  one JSON object a line with a "caption" string (the toy world's `captions.jsonl`)
    other    plain text, one caption a line (blank lines skipped)

The folder holds `classnames.txt`, `synonyms.json`, `groups.json` (no groups: captions carry
none), `corpus.jsonl` (kind `caption`, `found` = the classes the labeller finds, `asked`
empty) and `manifest.json` with every file's SHA-256; captions naming no class are left out
and counted in the manifest. The folder is written beside its target and swapped in whole.
"""

import argparse
import json
import sys
from pathlib import Path

from hiprompt.classnames import read_classes
from hiprompt.data.knowledge import check_class_count, write_knowledge_folder
from llm_knowledge.cli import read_synonyms
from llm_knowledge.labelling import Labeller
from llm_knowledge.synonyms import default_synonyms

KIND = "caption"


def _coco_captions(path: Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    expected = 'COCO captions format {"annotations": [{"image_id", "id", "caption"}, ...]}'
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: expected the {expected}")
    captions = []
    for number, record in enumerate(data["annotations"], 1):
        if not isinstance(record, dict) or not isinstance(record.get("caption"), str):
            raise ValueError(f"{path}: annotation {number} is {json.dumps(record)[:100]}: expected an object "
                             f"with a 'caption' string ({expected})")
        captions.append(record["caption"])
    return captions


def _jsonl_captions(path: Path) -> list:
    captions = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error})") from None
            if not isinstance(record, dict) or not isinstance(record.get("caption"), str):
                raise ValueError(f"{path}, line {number}: expected an object with a 'caption' string")
            captions.append(record["caption"])
    return captions


def read_captions(path) -> list:
    """The captions of one file, in file order (format by the file's name: module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    if path.suffix == ".json":
        captions = _coco_captions(path)
    elif path.suffix == ".jsonl":
        captions = _jsonl_captions(path)
    else:
        captions = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if not captions:
        raise ValueError(f"{path}: no captions")
    return captions


def caption_records(captions, labeller: Labeller):
    """(corpus records of the captions naming a class, number naming none)."""
    records, unlabelled = [], 0
    for text in captions:
        text = " ".join(text.split())
        found = labeller.find(text)
        if not found:
            unlabelled += 1
            continue
        records.append({"text": text, "asked": [], "found": found, "kind": KIND, "question": KIND})
    return records, unlabelled


def write_caption_folder(captions, classnames, out, synonyms=None, sources=()) -> dict:
    """Label `captions` over `classnames` and write the knowledge folder `out`; its manifest."""
    check_class_count(classnames, "the caption folder's classes")
    synonyms = synonyms if synonyms is not None else {label: [] for label in classnames}
    records, unlabelled = caption_records(captions, Labeller(classnames, synonyms))
    if not records:
        raise ValueError(f"none of the {len(captions)} captions names one of the {len(classnames)} classes")
    manifest = {
        "made_from": "captions",
        "sources": [str(s) for s in sources],
        "n_classes": len(classnames),
        "captions": {"read": len(captions), "labelled": len(records), "naming_no_class": unlabelled},
        "corpus": {KIND: len(records)},
    }
    return write_knowledge_folder(out, classnames, synonyms, manifest, groups={"coarse": [], "fine": []},
                                  corpus=records)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", required=True, help="a built-in class set (coco, voc2007, nuswide) or a file")
    parser.add_argument("--captions", required=True, nargs="+", type=Path, help="caption files (formats above)")
    parser.add_argument("--out", required=True, type=Path, help="the knowledge folder to write")
    parser.add_argument("--synonyms", default="", help="JSON {class: [synonym, ...]} (default: the built-in lists)")
    args = parser.parse_args(argv)
    try:
        classes, source = read_classes(args.classes)
        synonyms = (read_synonyms(args.synonyms, classes) if args.synonyms
                    else default_synonyms(classes, args.classes))
        captions = [caption for path in args.captions for caption in read_captions(path)]
        manifest = write_caption_folder(captions, classes, args.out, synonyms, args.captions)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = manifest["captions"]
    print(f"{args.out}: {counts['labelled']} of {counts['read']} captions name a class of {source} "
          f"({counts['naming_no_class']} name none and are left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
