"""The tagger: a list of labels and a folder of photos in, per-image predictions out.

The steps of `hiprompt tag` (hiprompt/apps/cli.py), each callable on its own:

1. `make_knowledge`: the knowledge stage (`llm_knowledge`) for the labels, into
   `<cache>/tag/knowledge/<key>`; every answer is cached, so a second run asks nothing.
2. `learn_prompts`: hierarchical prompts trained on that text by the project's trainer, into
   `<cache>/tag/prompts/<key>`, the key hashing the labels, the knowledge folder's content,
   the backbone's identity and every setting that shapes the prompts. The result is one
   checkpoint file, which `--prompts FILE` reuses anywhere (`export_prompts` copies it).
3. `Tagger.load`: the prompts on the frozen backbone, as class embeddings.
4. `tag_images`: every image under a folder (`find_images`: recursive; JPEG, PNG, WebP;
   EXIF orientation applied) scored with global + dense fusion, in batches, written as CSV
   or JSON Lines (`PredictionFile`). Unreadable images are reported and skipped; a rerun
   with the same output file scores only the images not yet written; a second run writing
   the same file at the same time is refused (`hiprompt.fileio.FileLock`).
5. `calibrate_thresholds`: per-label thresholds from a small labelled CSV.
6. `tag_shards`: at scale (`--out-dir`): a folder, an image list or WebDataset-style tar
   shards, planned once into shards (`hiprompt.apps.shards`); each process scores the shards
   it owns into one part each. Batches never straddle shards, so a shard scored again, by
   any process of any number of them, gives the same rows.

A label's score is its share of the image: p_c = softmax_c(s · S_c), S the fused score of
paper Eq. 16 and s the backbone's own logit scale (CLIP's learned temperature, 100 for
OpenAI's weights), so scores are comparable across backbones and sum to 1 over the labels.
A label is predicted when p_c reaches its threshold (`DEFAULT_THRESHOLD` unless calibrated).
"""

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from tqdm import tqdm

from hiprompt.apps import shards
from hiprompt.classnames import read_classes
from hiprompt.config import ConfigError, apply_settings, get_cfg_default, result_settings, validate_cfg
from hiprompt.data.base import MultiLabelImageSet
from hiprompt.data.custom import read_custom_csv
from hiprompt.data.image_dataset import ImageFeatureDataset
from hiprompt.data.knowledge import KnowledgeFolder, KnowledgeText, content_hash
from hiprompt.data.transforms import TestTransform
from hiprompt.fileio import FileLock, atomic_write_bytes, atomic_write_json, file_sha256, writing
from hiprompt.model.method import PromptedCLIP
from hiprompt.paths import cache_root
from hiprompt.training.checkpoint import PROMPTS_MODEL, CheckpointError, checkpoint_path, read_checkpoint
from hiprompt.training.prompt_training import PromptTraining
from hiprompt.training.runtime import BuiltinTrainerX, set_random_seed

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# A label is predicted when it holds at least this share of the image's probability (this
# project; the paper thresholds nothing, it ranks). Calibrate per label for real use.
DEFAULT_THRESHOLD = 0.1
DEFAULT_TOP_K = 3  # the paper's F1@3
TAG_SEED = 1  # the prompts' initialisation and sentence order, so the cache is reproducible
FIXED_COLUMNS = ("path", "labels", "top_k")
KEPT_PREDICTIONS = "the predictions already in it are intact; a rerun resumes after them"


def _digest(obj) -> str:
    """16 hex digits of the SHA-256 of `obj` as JSON (a dataclass, as GroupingOptions, as its fields)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=asdict).encode("utf-8")).hexdigest()[:16]


# -- 1. knowledge ------------------------------------------------------------------------------
def make_knowledge(labels_spec: str, backend: str, model: str = None, profile: str = "paper", cache_dir=None,
                   progress: bool = True, **options) -> Path:
    """The knowledge folder for the labels in `labels_spec` (a file, one label a line, or a
    built-in class set), made by `llm_knowledge.build_knowledge` with `backend`; `options` are
    its keyword options (counts, stages, grouping, max_tokens, base_url, ...), all part of the
    folder's key. Returns its path."""
    from llm_knowledge import build_knowledge

    classes, source = read_classes(labels_spec)
    key = _digest({"labels": classes, "backend": backend, "model": model, "profile": profile, "options": options})
    root = Path(cache_dir) if cache_dir else cache_root()
    out = root / "tag" / "knowledge" / key
    manifest = build_knowledge(classes, out, backend=backend, model=model or "", profile=profile,
                               cache_dir=root / "llm", source=source, progress=progress, **options)
    log.info("knowledge %s: %d sentences, %d LLM calls", out, sum(manifest["corpus"].values()),
             manifest["llm_calls"])
    return out


# -- 2. prompts --------------------------------------------------------------------------------
class TagTrainer(PromptTraining, BuiltinTrainerX):
    """The paper's trainer on the built-in runtime, trained on text only: its classes and its
    text set are the knowledge folder's (DATASET.TEXT.DIR), built here rather than looked up by
    name in DATASET_REGISTRY; there is no test set."""

    def read_test_vocabulary(self):
        """The knowledge folder's class names; no test set."""
        self.dataset = None
        self.use_classnames(KnowledgeFolder(self.cfg.DATASET.TEXT.DIR).classnames)

    def build_text_set(self):
        """The folder's sentences (`KnowledgeText`), not a registered plug-in."""
        return KnowledgeText(self.cfg, classnames=self.classnames)


def tag_config(backbone: str = "RN50", weights: str = "openai", overrides=()):
    """The training settings of the tagger: the project's defaults (hiprompt/config.py), the
    backbone, then `overrides` ((KEY, VALUE) pairs, as train.py's trailing pairs)."""
    cfg = get_cfg_default()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.WEIGHTS = backbone, weights
    cfg.SEED = TAG_SEED
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.TEST.NO_TEST = True
    try:
        cfg.merge_from_list([item for pair in overrides for item in pair])
    except (KeyError, AssertionError, ValueError) as error:
        text = error.args[0] if isinstance(error, KeyError) else str(error)
        raise ValueError(f"--set: {text} (the keys are documented in hiprompt/config.py)") from None
    validate_cfg(cfg)
    return cfg


def prompts_folder(knowledge_dir, cfg, backbone_identity: str, cache_dir=None) -> Path:
    """`<cache>/tag/prompts/<key>`: the key hashes the labels, the knowledge folder's
    content, the backbone's identity and every setting that shapes the prompts."""
    key = _digest({"labels": KnowledgeFolder(knowledge_dir).classnames, "knowledge": content_hash(knowledge_dir),
                   "backbone": backbone_identity, "settings": result_settings(cfg)})
    return (Path(cache_dir) if cache_dir else cache_root()) / "tag" / "prompts" / key


def learn_prompts(knowledge_dir, cfg, backbone_identity: str, cache_dir=None) -> Path:
    """The checkpoint file of prompts learned on `knowledge_dir` with `cfg`: from the cache
    when there, else trained (an interrupted training resumes after its last epoch)."""
    cfg = cfg.clone()
    cfg.DATASET.TEXT.DIR = str(knowledge_dir)
    cfg.OUTPUT_DIR = str(prompts_folder(knowledge_dir, cfg, backbone_identity, cache_dir))
    final = checkpoint_path(cfg.OUTPUT_DIR, PROMPTS_MODEL, cfg.OPTIM.MAX_EPOCH)
    if final.is_file():
        log.info("learned prompts from the cache: %s", final)
        return final
    set_random_seed(cfg.SEED)
    trainer = TagTrainer(cfg)
    if trainer.clip.identity() != backbone_identity:
        raise ValueError(f"the trainer built backbone {trainer.clip.identity()}, expected {backbone_identity}")
    trainer.train()
    return final


def export_prompts(prompts_file, destination) -> None:
    """Copy a prompts file (written whole or not at all)."""
    atomic_write_bytes(destination, Path(prompts_file).read_bytes())


# -- 3. the tagger -----------------------------------------------------------------------------
class Tagger:
    """Learned prompts on a frozen backbone: images in, per-label scores out."""

    def __init__(self, clip, model: PromptedCLIP, classnames, prompts_sha256: str, device="cpu"):
        self.clip, self.model, self.classnames = clip.to(device), model.to(device).eval(), list(classnames)
        self.prompts_sha256, self.device = prompts_sha256, torch.device(device)
        with torch.no_grad():
            global_emb, local_emb = self.model.prompts.class_embeddings()
        self.embeddings = (global_emb.float(), local_emb.float())  # [C, D] each
        self.logit_scale = float(clip.model.logit_scale.exp())
        self.transform = TestTransform(size=clip.image_size)

    @classmethod
    def load(cls, prompts_file, clip, cfg=None, device="cpu") -> "Tagger":
        """The prompts in `prompts_file` (a checkpoint of `learn_prompts`) on `clip`, which must
        be the backbone they were learned on. `cfg` supplies the inference settings
        (LAMBDA_FUSE, TAU_IMAGE); the others come from the file."""
        path = Path(prompts_file)
        try:
            state = read_checkpoint(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"prompts file not found: {path}") from None
        except CheckpointError as error:
            raise ValueError(f"{path}: unreadable as a prompts file of `hiprompt tag` ({error})") from None
        run = state.get("run")
        if not isinstance(run, dict) or not {"settings", "backbone", "classes", "groups"} <= set(run):
            raise ValueError(f"{path}: records no backbone, classes and groups: not a prompts file of `hiprompt tag`")
        if run["backbone"] != clip.identity():
            raise ValueError(f"{path} was learned on backbone {run['backbone']}, but this run builds "
                             f"{clip.identity()}: pass the same --backbone and --weights")
        prompt_settings = {k: v for k, v in run["settings"].items() if k.startswith("TRAINER.HIPROMPT.")}
        try:
            hp = apply_settings((cfg or get_cfg_default()).clone(), prompt_settings).TRAINER.HIPROMPT
        except ConfigError as error:
            raise ValueError(f"{path}: {error}; these prompts were learned by another version of hiprompt") from None
        model = PromptedCLIP(clip, run["classes"], run["groups"], hp)
        model.prompts.load_state_dict(state["state_dict"])
        return cls(clip, model, run["classes"], file_sha256(path), device)

    def image_transform(self):
        """PIL image -> [3, H, W]: EXIF orientation applied, then the test transform."""
        return T.Compose([T.Lambda(ImageOps.exif_transpose), self.transform.build()])

    @torch.no_grad()
    def fused_scores(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> S [B, C], paper Eq. 16."""
        global_feats, dense_feats = self.clip.encode_image_features(images.to(self.device))  # [B, D], [B, P, D]
        return self.model.image_scores(global_feats.float(), dense_feats.float(), self.embeddings).cpu()

    def probabilities(self, fused: torch.Tensor) -> torch.Tensor:
        """S [B, C] -> p [B, C] = softmax over the labels of logit_scale · S."""
        return torch.softmax(self.logit_scale * fused, dim=-1)

    def identity(self) -> dict:
        hp = self.model.hp
        return {"prompts_sha256": self.prompts_sha256, "backbone": self.clip.identity(),
                "labels": self.classnames, "transform": "exif-" + self.transform.key,
                "LAMBDA_FUSE": hp.LAMBDA_FUSE, "TAU_IMAGE": hp.TAU_IMAGE, "logit_scale": self.logit_scale}


# -- 4. images and predictions ------------------------------------------------------------------
def find_images(folder) -> list:
    """Every JPEG, PNG and WebP file under `folder` (recursive, by suffix, case-insensitive),
    as paths relative to `folder`, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                found.append(Path(root, name).relative_to(folder).as_posix())
    return sorted(found)


def predictions(probabilities: np.ndarray, classnames, thresholds: np.ndarray, top_k: int) -> list:
    """Per image: (labels at or above their threshold, by score; the top-k labels).
    probabilities [N, C], thresholds [C]."""
    result = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")
        chosen = [classnames[c] for c in order if row[c] >= thresholds[c]]
        result.append((chosen, [classnames[c] for c in order[:top_k]]))
    return result


class PredictionFile:
    """The append-only output: CSV (`.csv`) or JSON Lines (`.jsonl`), one image a record,
    flushed per record. Opening an existing file drops a torn last record (a run killed while
    writing it; a CSV record may span lines, as an image name may hold a newline) and returns
    the images already written, so a rerun skips them. A failed write (full disk, read-only
    file system) raises `hiprompt.fileio.WriteError`; the records before it are intact."""

    def __init__(self, path, classnames):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".csv", ".jsonl"):
            raise ValueError(f"--out {self.path}: expected a .csv or .jsonl file name")
        self.format = suffix[1:]
        self.classnames = list(classnames)
        clashes = sorted(set(FIXED_COLUMNS) & set(self.classnames))
        if clashes and self.format == "csv":
            raise ValueError(f"labels {clashes} clash with the CSV's own columns {FIXED_COLUMNS}: "
                             "rename them, or write .jsonl")

    @property
    def header(self) -> list:
        return [*FIXED_COLUMNS, *self.classnames]

    def written(self) -> set:
        """The images already in the file, after dropping a torn last record (a run killed
        while writing it). Records, not lines: a CSV record ends at a newline outside quotes
        (an image's name may hold a newline), a JSON Lines record at a newline."""
        if not self.path.exists():
            return set()
        data = self.path.read_bytes()
        records, complete = self._jsonl_records(data) if self.format == "jsonl" else self._csv_records(data)
        if complete != len(data):
            log.warning("%s: dropping a torn last record (%d bytes) left by an interrupted run",
                        self.path, len(data) - complete)
            with writing(self.path, "the complete records before the torn one are kept"), \
                    open(self.path, "r+b") as handle:
                handle.truncate(complete)
        if self.format == "jsonl":
            return {record["path"] for record in records}
        if not records:
            return set()
        if records[0] != self.header:
            raise ValueError(f"{self.path}, line 1: its columns are not this run's "
                             f"({len(records[0])} columns there, {len(self.header)} now): write to another --out")
        return {row[0] for row in records[1:] if row}

    def _jsonl_records(self, data: bytes):
        """(the records, the bytes they take): every line that ends with a newline."""
        complete = data.rfind(b"\n") + 1
        records = []
        for number, line in enumerate(data[:complete].split(b"\n")[:-1], 1):
            try:
                record = json.loads(line.decode("utf-8"))
                record["path"]  # noqa: B018 (the check)
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{self.path}, line {number}: not a prediction record "
                                 "(expected JSON with a 'path'): write to another --out") from None
            records.append(record)
        return records, complete

    def _csv_records(self, data: bytes):
        """(the CSV records, the bytes they take): the csv module reads the file line by line
        (lines cut at newlines only, as it reads a file opened with newline=''), and a record
        counts when it ends with its line's newline, outside quotes; a last one cut anywhere,
        inside a quoted name too, is left out."""
        pieces = data.split(b"\n")
        lines = [piece + b"\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
        consumed = [0, 0]  # lines and bytes the reader has taken

        def feed():
            for number, line in enumerate(lines):
                last = number == len(lines) - 1 and not line.endswith(b"\n")
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    if not last:  # a torn last line may end inside a character
                        raise ValueError(f"{self.path}, line {number + 1}: not UTF-8: "
                                         "write to another --out") from None
                    text = line.decode("utf-8", errors="replace")
                consumed[0], consumed[1] = number + 1, consumed[1] + len(line)
                yield text

        reader = csv.reader(feed(), strict=True)
        records, complete = [], 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                if consumed[0] == len(lines):  # the end came inside a quoted field: torn
                    break
                raise ValueError(f"{self.path}, line {reader.line_num}: not CSV as `hiprompt tag` writes it "
                                 f"({error}): write to another --out") from None
            if not lines[consumed[0] - 1].endswith(b"\n"):
                break  # the last record lacks its newline: torn
            records.append(record)
            complete = consumed[1]
        return records, complete

    def append(self, records) -> None:
        """records: (path, scores [C], labels, top-k) tuples."""
        new = not self.path.exists() or self.path.stat().st_size == 0
        with writing(self.path, KEPT_PREDICTIONS):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append(records, new)

    def _append(self, records, new: bool) -> None:
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            # csv quotes a field with the line terminator (\n) but not one with a lone \r, which
            # its reader then takes for a line end: such a record is written all quoted
            quoted = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)
            if new and self.format == "csv":
                writer.writerow(self.header)
            for path, scores, labels, top in records:
                values = [float(f"{s:.6g}") for s in scores]
                if self.format == "csv":
                    row = [path, "|".join(labels), "|".join(top)]
                    (quoted if any("\r" in field for field in row) else writer).writerow([*row, *values])
                else:
                    handle.write(json.dumps({"path": path, "scores": dict(zip(self.classnames, values)),
                                             "labels": labels, "top_k": top}, ensure_ascii=False) + "\n")
                handle.flush()
            os.fsync(handle.fileno())


def _read_error(path) -> str:
    """Why PIL cannot read `path` (for the report)."""
    try:
        with Image.open(path) as image:
            image.load()
            ImageOps.exif_transpose(image)
    except Exception as error:  # noqa: BLE001 (any reason is reported, none is raised)
        return f"{type(error).__name__}: {error}"
    return "unreadable"


@dataclass
class TagReport:
    found: int
    already_written: int
    scored: int
    unreadable: list  # [{"path", "error"}]
    seconds: float

    def as_dict(self) -> dict:
        return {"images_found": self.found, "already_written": self.already_written, "scored_now": self.scored,
                "unreadable": self.unreadable, "seconds": round(self.seconds, 3),
                "seconds_per_1000_images": round(1000 * self.seconds / self.scored, 1) if self.scored else None}


def _check_run(run_file: Path, out: Path, identity: dict) -> None:
    """Refuse to resume an output written with other prompts, backbone or decision settings."""
    if run_file.is_file():
        before = json.loads(run_file.read_text(encoding="utf-8"))
        differences = [k for k in sorted(set(before) | set(identity)) if before.get(k) != identity.get(k)]
        if differences:
            raise ValueError(f"{out} was written by a run with other {', '.join(differences)} "
                             f"(see {run_file}): write to another --out, or delete both files to start again")
    elif out.exists() and out.stat().st_size > 0:
        raise ValueError(f"{out} exists but has no {run_file.name}: it was not written by `hiprompt tag`; "
                         "choose another --out")
    atomic_write_json(run_file, identity)


def tag_images(tagger: Tagger, image_dir, out, thresholds=None, top_k: int = DEFAULT_TOP_K,
               batch_size: int = 32, num_workers: int = 0, progress: bool = True, lock: bool = True) -> TagReport:
    """Score every image under `image_dir` into `out` (see `PredictionFile`), skipping those
    already there. Writes `<out>.run.json` (what the scores depend on; a resume must match it)
    and `<out>.report.json` (counts, unreadable images with the reason, time). The paths
    written are relative to `image_dir`. With `lock`, holds `FileLock(out)` meanwhile, so a
    second run writing the same file stops at once (FileBusyError); pass False when the
    caller holds it."""
    started = time.time()
    image_dir, out = Path(image_dir), Path(out)
    classnames = tagger.classnames
    thresholds = np.full(len(classnames), DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds)
    if top_k < 1:
        raise ValueError(f"--top-k {top_k}: expected 1 or more")
    if thresholds.shape != (len(classnames),):
        raise ValueError(f"{thresholds.shape[0]} thresholds for {len(classnames)} labels")
    images = find_images(image_dir)
    output = PredictionFile(out, classnames)
    with FileLock(out, "tagging") if lock else contextlib.nullcontext():
        identity = {**tagger.identity(), "images": str(image_dir.resolve()),
                    "thresholds": [float(t) for t in thresholds], "top_k": top_k}
        _check_run(Path(f"{out}.run.json"), out, identity)
        done = output.written()
        todo = [p for p in images if p not in done]
        unreadable = []
        if todo:
            paths = [str(image_dir / p) for p in todo]
            image_set = MultiLabelImageSet(name=str(image_dir), classnames=[], image_paths=paths,
                                           labels=np.zeros((len(todo), 0)))  # no labels: [N, 0]
            loader = DataLoader(ImageFeatureDataset(image_set, tagger.image_transform()), batch_size=batch_size,
                                num_workers=num_workers)
            with tqdm(total=len(images), initial=len(images) - len(todo), unit="img", desc="tagging",
                      disable=not progress, dynamic_ncols=True) as bar:
                for batch, indices, ok in loader:  # [B, 3, H, W], [B], [B]
                    for i in indices[~ok].tolist():
                        unreadable.append({"path": todo[i], "error": _read_error(image_set.image_paths[i])})
                    if ok.any():
                        probs = tagger.probabilities(tagger.fused_scores(batch[ok])).numpy()  # [B', C]
                        names = [todo[i] for i in indices[ok].tolist()]
                        chosen = predictions(probs, classnames, thresholds, top_k)
                        output.append([(n, p, labels, top) for n, p, (labels, top) in zip(names, probs, chosen)])
                    bar.update(len(indices))
        elif not images:
            log.warning("no JPEG, PNG or WebP image under %s", image_dir)
        if not out.exists():
            output.append([])  # a run that scored nothing still leaves a (header-only) file
        report = TagReport(len(images), len(images) - len(todo), len(todo) - len(unreadable), unreadable,
                           time.time() - started)
        atomic_write_json(f"{out}.report.json", report.as_dict())
        return report


# -- 5. thresholds -----------------------------------------------------------------------------
def best_f1_threshold(scores: np.ndarray, positive: np.ndarray):
    """(threshold, F1): the threshold t maximising the F1 of `scores >= t` against `positive`
    (both [N]); t lies halfway between the lowest score predicted positive and the next one
    below it (or at that score when none is below). Ties keep the higher threshold."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order].astype(float)
    true_pos = np.cumsum(hits)  # predicting the top j+1 images positive
    f1 = 2 * true_pos / (np.arange(1, len(ranked) + 1) + hits.sum())
    # only cut between distinct scores: a threshold cannot split tied images
    cuts = np.flatnonzero(np.append(ranked[1:] < ranked[:-1], True))
    best = cuts[np.argmax(f1[cuts])]
    threshold = ranked[best] if best + 1 == len(ranked) else (ranked[best] + ranked[best + 1]) / 2
    return float(threshold), float(f1[best])


def calibrate_thresholds(tagger: Tagger, labelled_csv, batch_size: int = 32, num_workers: int = 0,
                         default: float = DEFAULT_THRESHOLD):
    """Per-label thresholds from a CSV of `image,labels` (hiprompt/data/custom.py's format; the
    labels joined by `|`, each one of the tagger's). A label needs a positive and a negative
    image there; others keep `default`. Returns (thresholds [C], table for the log)."""
    image_set = read_custom_csv(labelled_csv)
    unknown = sorted(set(image_set.classnames) - set(tagger.classnames))
    if unknown:
        raise ValueError(f"{labelled_csv}: labels {unknown} are not among the tagger's labels {tagger.classnames}")
    loader = DataLoader(ImageFeatureDataset(image_set, tagger.image_transform()), batch_size=batch_size,
                        num_workers=num_workers)
    probs, rows = [], []
    for batch, indices, ok in loader:
        if ok.any():
            probs.append(tagger.probabilities(tagger.fused_scores(batch[ok])).numpy())
            rows.extend(indices[ok].tolist())
    if not rows:
        raise ValueError(f"{labelled_csv}: none of its images could be read")
    probs = np.concatenate(probs)  # [N, C]
    truth = np.zeros_like(probs)
    columns = [tagger.classnames.index(c) for c in image_set.classnames]
    truth[:, columns] = image_set.labels[rows]
    thresholds, table = np.full(len(tagger.classnames), default), {}
    for c, name in enumerate(tagger.classnames):
        positives = int(truth[:, c].sum())
        if 0 < positives < len(rows):
            thresholds[c], f1 = best_f1_threshold(probs[:, c], truth[:, c])
            table[name] = {"threshold": float(thresholds[c]), "f1": round(f1, 4), "positives": positives}
        else:
            table[name] = {"threshold": default, "f1": None, "positives": positives,
                           "note": "default: calibration needs a positive and a negative image"}
    return thresholds, table



# -- 6. at scale: a folder of parts ---------------------------------------------------------------
# How an image is decoded (part of a sharded run's identity; the transform's key is in Tagger.identity)
DECODE = {"exif_transpose": True, "mode": "RGB", "max_image_pixels": Image.MAX_IMAGE_PIXELS,
          "tar_image_kinds": list(shards.IMAGE_KINDS)}


def shard_identity(tagger: Tagger, thresholds, top_k: int, fmt: str) -> dict:
    """What a sharded run's rows depend on (no paths): the tagger's identity, the decision
    settings, the precision, the decoding and the parts' format."""
    if top_k < 1:
        raise ValueError(f"--top-k {top_k}: expected 1 or more")
    if fmt not in shards.PART_FORMATS:
        raise ValueError(f"--format {fmt}: expected one of {shards.PART_FORMATS}")
    if fmt == "parquet" and shards.pyarrow_or_none() is None:
        raise ValueError("--format parquet needs pyarrow: pip install 'hiprompt[scale]' (or pyarrow>=14)")
    thresholds = [float(t) for t in np.broadcast_to(np.asarray(thresholds, dtype=float), (len(tagger.classnames),))]
    return {**tagger.identity(), "thresholds": thresholds, "top_k": top_k,
            "precision": str(tagger.clip.dtype).replace("torch.", ""), "decode": DECODE, "format": fmt}


@dataclass
class ShardInput:
    """Where a sharded run's images are: `folder` (every image under `root`, sorted), `list`
    (the ids of `list_file`, in its order, relative to `root`) or `tar` (`pattern`, brace-
    expanded; one tar a shard, its members grouped by key as WebDataset does)."""

    kind: str
    root: Path
    list_file: str = None
    pattern: str = None

    @classmethod
    def from_args(cls, images=None, image_list=None, pattern=None, image_root=None) -> "ShardInput":
        if sum(x is not None for x in (images, image_list, pattern)) != 1:
            raise ValueError("give one input: --images FOLDER, --image-list FILE or --shards PATTERN")
        if images is not None:
            if not Path(images).is_dir():
                raise FileNotFoundError(f"image folder not found: {images}")
            return cls("folder", Path(images))
        if image_list is not None:
            return cls("list", Path(image_root) if image_root else Path(image_list).parent, list_file=image_list)
        root, _ = shards.tar_names(pattern, image_root)
        return cls("tar", root, pattern=pattern)

    def tars(self):
        return shards.tar_names(self.pattern, self.root)[1] if self.kind == "tar" else None

    def plan(self, identity: dict, shard_size: int):
        """(manifest, images.jsonl bytes): listed now, frozen from then on."""
        if self.kind == "tar":
            return shards.make_plan(identity, "tar", shard_size, tars=self.tars())
        ids = find_images(self.root) if self.kind == "folder" else shards.read_image_list(self.list_file)
        return shards.make_plan(identity, self.kind, shard_size, ids=ids)

    def items(self, shard: dict, ids) -> list:
        """The shard's rows to be: (id, source), a source being ("file", path), ("tar", path,
        offset, size) or ("error", why)."""
        if self.kind != "tar":
            return [(i, ("file", str(self.root / i))) for i in ids[shard["start"]:shard["end"]]]
        return tar_items(self.root / shard["tar"], shard["tar"])


def tar_items(path, name: str) -> list:
    """A tar's members grouped by key, in tar order: the first JPEG, PNG or WebP member of a
    key is its image; a key without one, and a tar that cannot be read to its end, give an
    error row (the members listed before are kept)."""
    groups, broken = {}, None
    try:
        with tarfile.open(path, "r:") as tar:  # uncompressed: members are read by offset
            for member in tar:
                base = member.name.rpartition("/")[2]
                if member.isfile() and not base.startswith("."):
                    key, kind = shards.tar_key(member.name)
                    groups.setdefault(key, []).append((kind, member))
    except (tarfile.TarError, OSError, EOFError) as error:
        broken = f"tar unreadable after {len(groups)} keys: {type(error).__name__}: {error}"
    items = []
    for key, members in groups.items():
        image = next((m for kind, m in members if kind in shards.IMAGE_KINDS), None)
        if image is None:
            kinds = ", ".join(sorted({"." + kind if kind else "(no extension)" for kind, _ in members}))
            items.append((key, ("error", f"no JPEG, PNG or WebP member for this key (members: {kinds})")))
        else:
            items.append((key, ("tar", str(path), image.offset_data, image.size)))
    if broken:
        items.append((name, ("error", broken)))
    return items


class _NoImage(Exception):
    pass


class ShardImages(Dataset):
    """Item i: (image [3, H, W], i, ok, error). A file, a tar member (read by offset, one open
    handle per worker) or a planned error; anything unreadable gives zeros, ok=False and
    the reason."""

    def __init__(self, sources, transform, size):
        self.sources, self.transform, self.size = sources, transform, tuple(size)
        self._handles = {}

    def __len__(self) -> int:
        return len(self.sources)

    def _open(self, source):
        if source[0] == "file":
            return Image.open(source[1])
        if source[0] == "tar":
            _, path, offset, size = source
            handle = self._handles.get(path)
            if handle is None:
                handle = self._handles[path] = open(path, "rb")
            handle.seek(offset)
            return Image.open(io.BytesIO(handle.read(size)))
        raise _NoImage(source[1])

    def __getitem__(self, index: int):
        try:
            with self._open(self.sources[index]) as image:
                image.load()
                tensor = self.transform(image)  # [3, H, W]
        except Exception as error:  # noqa: BLE001 (any reason is recorded in the part, none is raised)
            reason = str(error) if isinstance(error, _NoImage) else f"{type(error).__name__}: {error}"
            return torch.zeros(3, *self.size), index, False, reason
        return tensor, index, True, ""

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


def score_shard(tagger: Tagger, items, thresholds: np.ndarray, top_k: int, batch_size: int = 32,
                num_workers: int = 0, bar=None) -> list:
    """The part's rows (id, ok, error, labels, top-k, scores [C] or None), in `items`' order,
    in batches of this shard's images only."""
    dataset = ShardImages([source for _, source in items], tagger.image_transform(), tagger.transform.size)
    cuda = tagger.device.type == "cuda"
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=cuda)
    rows = [None] * len(items)
    try:
        for batch, indices, ok, errors in loader:  # [B, 3, H, W], [B], [B], B strings
            for j, i in enumerate(indices.tolist()):
                if not ok[j]:
                    rows[i] = (items[i][0], False, errors[j], [], [], None)
            if ok.any():
                batch = batch.to(tagger.device, non_blocking=cuda)
                probs = tagger.probabilities(tagger.fused_scores(batch[ok.to(batch.device)])).numpy()  # [B', C]
                kept = indices[ok].tolist()
                for i, p, (labels, top) in zip(kept, probs, predictions(probs, tagger.classnames, thresholds, top_k)):
                    rows[i] = (items[i][0], True, "", labels, top, p)
            if bar is not None:
                bar.update(len(indices))
    finally:
        dataset.close()
    return rows


def prepare_plan(out_dir, identity: dict, source: ShardInput, shard_size: int = shards.DEFAULT_SHARD_SIZE,
                 planner: bool = True, timeout: float = 600.0, rank: int = 0) -> dict:
    """The plan in `out_dir`: read and checked against this run when there; else made now
    (`planner`: rank 0, or --plan-only) or waited for (the other ranks)."""
    out = Path(out_dir)
    if (out / shards.MANIFEST).is_file():
        plan = shards.read_plan(out)
    elif planner:
        manifest, data = source.plan(identity, shard_size)
        shards.write_plan(out, manifest, data)
        plan = shards.read_plan(out)
        log.info("planned %s: %d shards", out, len(plan["shards"]))
        return plan
    else:
        log.info("rank %d: waiting for the plan %s", rank, out / shards.MANIFEST)
        plan = shards.wait_for_plan(out, timeout, rank=rank)
    shards.check_plan(plan, identity, source.kind, out, source.tars())
    planned = plan["input"]["shard_size"]
    if planned is not None and planned != shard_size:
        log.warning("%s was planned with --shard-size %d; the plan's shards are kept", out, planned)
    return plan


def tag_shards(tagger: Tagger, out_dir, source: ShardInput, plan: dict, rank: int = 0, world_size: int = 1,
               batch_size: int = 32, num_workers: int = 0, progress: bool = True) -> dict:
    """Score the shards of `plan` that rank `rank` of `world_size` owns and that have no part
    yet, one part each (`hiprompt.apps.shards.write_part`); when every part is there, write
    report.json and _SUCCESS. Returns this process's counts."""
    started, out = time.time(), Path(out_dir)
    identity = plan["identity"]
    fmt, top_k = identity["format"], identity["top_k"]
    thresholds = np.asarray(identity["thresholds"], dtype=float)
    if list(plan["labels"]) != tagger.classnames:
        raise shards.PlanError(f"{out}: planned for the labels {plan['labels']}, the tagger has {tagger.classnames}")
    ids = shards.shard_ids(out, plan) if plan["input"]["kind"] != "tar" else None
    owned = shards.my_shards(plan, rank, world_size)
    todo = [s for s in owned if not shards.is_done(out, s["index"], fmt)]
    counts = {"rank": rank, "world_size": world_size, "shards_owned": len(owned), "shards_written": 0,
              "images": 0, "unreadable": 0}
    total = sum(s["end"] - s["start"] for s in todo) if ids is not None else None
    with tqdm(total=total, unit="img", desc=f"rank {rank}" if world_size > 1 else "tagging",
              disable=not progress, dynamic_ncols=True) as bar:
        for shard in todo:
            t0 = time.time()
            rows = score_shard(tagger, source.items(shard, ids), thresholds, top_k, batch_size, num_workers, bar)
            shards.write_part(out, shard["index"], rows, fmt, tagger.classnames)
            bad = sum(not row[1] for row in rows)
            counts["shards_written"] += 1
            counts["images"] += len(rows)
            counts["unreadable"] += bad
            log.info("rank %d: shard %d done: %d images (%d unreadable), %.1f images/s", rank, shard["index"],
                     len(rows), bad, len(rows) / max(time.time() - t0, 1e-9))
    counts["complete"] = shards.finish_if_complete(out, plan)
    counts["seconds"] = round(time.time() - started, 3)
    return counts
