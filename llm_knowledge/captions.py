"""Image captions -> a knowledge folder (the training text of TaI-DPT and of Table 1's "Image
Captions" row), labelled by the project's labeller (`llm_knowledge.labelling`) or, with
`--labeller taidpt`, by TaI-DPT's rule (`llm_knowledge.taidpt_labelling`).

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

TaI-DPT's training text (guozix/TaI-DPT, docs/baselines.md), each step an option, in its order:
    --sample N [--seed S]  N captions drawn at random (seeded) from all read, kept in file order
                           (TaI-DPT: 118,287 of COCO's captions_train2017, coco2014_distill.py);
    --caption-ids FILE     or exactly the COCO caption ids listed in FILE (a JSON list, or one
                           id a line), e.g. TaI-DPT's coco_caption_text_embed_sampled_idx.pkl
                           written out as JSON;
    --per-class-cap N      each labelled caption given to its rarest class (the fewest labelled
                           captions; equal counts: the earlier class) and kept while that class
                           has fewer than N, in file order (TaI-DPT on NUS-WIDE: 1,000,
                           nuswide_distill.py);
    --templates            89 single-label sentences per class: "a photo of a {}." 9 times and
                           the 80 ImageNet templates (coco2014_distill.py), the name as TaI-DPT
                           writes it (`hiprompt.classnames.taidpt_name`), labelled with that class.
    --recipe taidpt        TaI-DPT's values for the class set: coco and voc2007: --sample 118287
                           --templates; nuswide: --per-class-cap 1000 --templates (an explicit
                           option wins).
    --labeller taidpt      TaI-DPT's labelling (NLTK lemmas, names matched longest first,
                           llm_knowledge/taidpt_labelling.py) instead of the project's; needs
                           NLTK and its data, so it is not part of --recipe taidpt; give it
                           TaI-DPT's synonym lists with --synonyms (JSON {class: [name, ...]}).
"""

import argparse
import json
import random
import sys
from pathlib import Path

from hiprompt.classnames import read_classes, taidpt_name
from hiprompt.data.knowledge import check_class_count, write_knowledge_folder
from llm_knowledge.cli import read_synonyms
from llm_knowledge.labelling import Labeller
from llm_knowledge.synonyms import default_synonyms
from llm_knowledge.taidpt_labelling import WordMatchLabeller

KIND = "caption"
LABELLERS = {"project": Labeller, "taidpt": WordMatchLabeller}  # --labeller

# TaI-DPT's single-label sentences (its datasets/data_helpers.py): `prompt_template`, added
# TEMPLATE_REPEATS times, and `IMAGENET_TEMPLATES` (CLIP's 80 ImageNet templates), each once.
TEMPLATE = "a photo of a {}."
TEMPLATE_REPEATS = 9  # its default_prompt_num - 1
IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)
# TaI-DPT's values per built-in class set (--recipe taidpt): its COCO and VOC2007 text samples
# COCO train2017 captions; its NUS-WIDE text takes OpenImages' captions, capped per class.
TAIDPT_RECIPES = {
    "coco": {"sample": 118287, "per_class_cap": 0, "templates": True},
    "voc2007": {"sample": 118287, "per_class_cap": 0, "templates": True},
    "nuswide": {"sample": 0, "per_class_cap": 1000, "templates": True},
}
RECIPES = ("none", "taidpt")


def _coco_annotations(path: Path) -> list:
    """The annotation records of COCO's captions file `path`, each checked to hold a caption."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    expected = 'COCO captions format {"annotations": [{"image_id", "id", "caption"}, ...]}'
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: expected the {expected}")
    for number, record in enumerate(data["annotations"], 1):
        if not isinstance(record, dict) or not isinstance(record.get("caption"), str):
            raise ValueError(f"{path}: annotation {number} is {json.dumps(record)[:100]}: expected an object "
                             f"with a 'caption' string ({expected})")
    return data["annotations"]


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


def _captions_by_id(path: Path, annotations, ids) -> list:
    """The captions of `annotations` (of `path`) whose annotation ids are `ids`, in that order."""
    by_id = {record.get("id"): record["caption"] for record in annotations}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{path}: no caption with the ids {missing[:10]}{' ...' if len(missing) > 10 else ''} "
                         f"({len(missing)} of the {len(ids)} listed)")
    return [by_id[i] for i in ids]


def read_caption_ids(path) -> list:
    """Caption ids from a file: a JSON list of integers, or one integer a line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    try:
        ids = json.loads(text) if text.lstrip().startswith("[") else [int(line) for line in text.split()]
    except ValueError as error:
        raise ValueError(f"{path}: expected a JSON list of caption ids or one id a line ({error})") from None
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"{path}: expected a non-empty list of integer caption ids")
    return ids


def read_captions(path, ids=None) -> list:
    """The captions of one file, in file order (format by the file's name: module docstring);
    with `ids`, those of a COCO captions file with these annotation ids, in their order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    if ids is not None:
        if path.suffix != ".json":
            raise ValueError(f"{path}: caption ids select from COCO's captions format (a .json file) only")
        captions = _captions_by_id(path, _coco_annotations(path), ids)
    elif path.suffix == ".json":
        captions = [record["caption"] for record in _coco_annotations(path)]
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


def sample_captions(captions, count: int, seed: int = 0) -> list:
    """`count` of `captions` drawn at random (seeded by `seed`), in their file order; all when
    `count` is 0 or at least their number."""
    if count <= 0 or count >= len(captions):
        return list(captions)
    picked = sorted(random.Random(seed).sample(range(len(captions)), count))
    return [captions[i] for i in picked]


def cap_per_rarest_class(records, classnames, cap: int) -> list:
    """TaI-DPT's NUS-WIDE balancing: each record given to the rarest of its classes (the fewest
    records among all `records`; equal counts: the earlier class in `classnames`), and kept
    while that class holds fewer than `cap` (records in their order)."""
    count = {name: 0 for name in classnames}
    for record in records:
        for name in record["found"]:
            count[name] += 1
    rarest_first = sorted(classnames, key=lambda name: count[name])  # stable: ties by class order
    rank = {name: i for i, name in enumerate(rarest_first)}
    held = {name: 0 for name in classnames}
    kept = []
    for record in records:
        owner = min(record["found"], key=rank.__getitem__)
        if held[owner] < cap:
            held[owner] += 1
            kept.append(record)
    return kept


def template_records(classnames) -> list:
    """TaI-DPT's single-label sentences: per class, "a photo of a {}." TEMPLATE_REPEATS times,
    then each of IMAGENET_TEMPLATES, with the class's TaI-DPT name, labelled with that class."""
    records = []
    for label in classnames:
        name = taidpt_name(label)
        for template in (TEMPLATE,) * TEMPLATE_REPEATS + IMAGENET_TEMPLATES:
            records.append({"text": template.format(name), "asked": [label], "found": [label], "kind": KIND,
                            "question": "template"})
    return records


def write_caption_folder(captions, classnames, out, synonyms=None, sources=(), per_class_cap: int = 0,
                         templates: bool = False, sampled=None, labeller: str = "project") -> dict:
    """Label `captions` over `classnames` and write the knowledge folder `out`; its manifest.
    per_class_cap > 0: `cap_per_rarest_class`; templates: add `template_records`; sampled:
    how the captions were chosen, for the manifest; labeller: one of LABELLERS."""
    check_class_count(classnames, "the caption folder's classes")
    synonyms = synonyms if synonyms is not None else {label: [] for label in classnames}
    records, unlabelled = caption_records(captions, LABELLERS[labeller](classnames, synonyms))
    if not records:
        raise ValueError(f"none of the {len(captions)} captions names one of the {len(classnames)} classes")
    labelled = len(records)
    if per_class_cap > 0:
        records = cap_per_rarest_class(records, classnames, per_class_cap)
    kept = len(records)
    if templates:
        records += template_records(classnames)
    manifest = {
        "made_from": "captions",
        "sources": [str(s) for s in sources],
        "n_classes": len(classnames),
        "captions": {"read": len(captions), "labelled": labelled, "naming_no_class": unlabelled,
                     "labeller": labeller},
        "corpus": {KIND: len(records)},
    }
    if sampled is not None or per_class_cap > 0 or templates:
        manifest["taidpt"] = {"sampled": sampled, "per_class_cap": per_class_cap, "kept_after_cap": kept,
                              "templates": len(records) - kept}
    return write_knowledge_folder(out, classnames, synonyms, manifest, groups={"coarse": [], "fine": []},
                                  corpus=records)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", required=True, help="a built-in class set (coco, voc2007, nuswide) or a file")
    parser.add_argument("--captions", required=True, nargs="+", type=Path, help="caption files (formats above)")
    parser.add_argument("--out", required=True, type=Path, help="the knowledge folder to write")
    parser.add_argument("--synonyms", default="", help="JSON {class: [synonym, ...]} (default: the built-in lists)")
    parser.add_argument("--recipe", default="none", choices=RECIPES,
                        help="taidpt: TaI-DPT's values for a built-in class set (module docstring)")
    parser.add_argument("--sample", type=int, default=None, help="N captions drawn at random (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of --sample (default 0)")
    parser.add_argument("--caption-ids", type=Path, default=None,
                        help="the COCO caption ids to take (a JSON list or one id a line)")
    parser.add_argument("--per-class-cap", type=int, default=None,
                        help="each caption to its rarest class, at most N a class (0: no cap)")
    parser.add_argument("--templates", action="store_true", default=None,
                        help="add TaI-DPT's 89 single-label template sentences per class")
    parser.add_argument("--labeller", default="project", choices=tuple(LABELLERS),
                        help="project: llm_knowledge.labelling (default) | taidpt: TaI-DPT's NLTK lemma match "
                             "(needs NLTK and its data; with --synonyms TaI-DPT's synonym lists as JSON)")
    args = parser.parse_args(argv)
    try:
        classes, source = read_classes(args.classes)
        recipe = {"sample": 0, "per_class_cap": 0, "templates": False}
        if args.recipe == "taidpt":
            if args.classes not in TAIDPT_RECIPES:
                raise ValueError(f"--recipe taidpt: TaI-DPT's values exist for {', '.join(TAIDPT_RECIPES)}, "
                                 f"not {args.classes}; give --sample, --per-class-cap, --templates instead")
            recipe = dict(TAIDPT_RECIPES[args.classes])
        for key in recipe:
            if getattr(args, key) is not None:
                recipe[key] = getattr(args, key)
        synonyms = (read_synonyms(args.synonyms, classes) if args.synonyms
                    else default_synonyms(classes, args.classes))
        ids = read_caption_ids(args.caption_ids) if args.caption_ids else None
        captions = [caption for path in args.captions for caption in read_captions(path, ids)]
        sampled = None
        if ids is not None:
            sampled = {"caption_ids": str(args.caption_ids), "count": len(captions)}
        elif recipe["sample"]:
            sampled = {"of": len(captions), "seed": args.seed}
            captions = sample_captions(captions, recipe["sample"], args.seed)
            sampled["count"] = len(captions)
        manifest = write_caption_folder(captions, classes, args.out, synonyms, args.captions,
                                        per_class_cap=recipe["per_class_cap"], templates=recipe["templates"],
                                        sampled=sampled, labeller=args.labeller)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = manifest["captions"]
    print(f"{args.out}: {counts['labelled']} of {counts['read']} captions name a class of {source} "
          f"({counts['naming_no_class']} name none and are left out); {manifest['corpus'][KIND]} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
