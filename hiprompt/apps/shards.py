"""Tagging at scale: the plan, who does what, and the parts (`hiprompt tag --out-dir OUT`).

No torch here, and no torch.distributed anywhere: processes never talk to each other. They
share one folder on a shared file system:

    OUT/manifest.json      the plan, written once (atomically) by rank 0 or by --plan-only:
                           the run's identity (what the scores depend on; no absolute paths),
                           the input's kind and the frozen list of shards
    OUT/images.jsonl       the planned image ids (folder and list inputs), one JSON string a line,
                           in plan order; the manifest holds its SHA-256
    OUT/parts/part-000123.<csv|jsonl|parquet>
                           one part per shard, written whole (temporary name, fsync, rename):
                           a shard is done iff its part exists
    OUT/report.json        counts and unreadable images with the reason, once every part is there
    OUT/_SUCCESS           written last

Shard i belongs to rank i mod W (`owner`), so any number of processes, in any order, writes
each part exactly once, and a rerun (another W too) skips the parts already there. A part's
bytes depend on the shard's images and the identity only, not on W.
"""

import csv
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

from hiprompt.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, writing

PLAN_FORMAT = 1
MANIFEST = "manifest.json"
IMAGES = "images.jsonl"
PARTS = "parts"
REPORT = "report.json"
SUCCESS = "_SUCCESS"
DEFAULT_SHARD_SIZE = 10_000
PART_FORMATS = ("csv", "jsonl", "parquet")
PART_COLUMNS = ("id", "ok", "error", "labels", "top_k", "scores")
IMAGE_KINDS = ("jpg", "jpeg", "png", "webp")  # tar members read as images (WebDataset extensions)


class PlanError(ValueError):
    """The plan in OUT is not this run's (other identity, other input) or cannot be read."""


# -- inputs ------------------------------------------------------------------------------------
def brace_expand(pattern: str) -> list:
    """`d/{000000..000003}.tar` -> d/000000.tar ... d/000003.tar (zero padding kept), and
    `{a,b}` alternatives; several braces multiply, in order."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, body, tail = pattern[:match.start()], match.group(1), pattern[match.end():]
    span = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if span:
        first, last = span.groups()
        width = len(first) if first.startswith("0") or len(first) == len(last) else 0
        if int(last) < int(first):
            raise ValueError(f"--shards {pattern}: the range {{{body}}} runs backwards")
        choices = [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    else:
        choices = body.split(",")
    return [expanded for choice in choices for expanded in brace_expand(head + choice + tail)]


def tar_names(pattern: str, root=None):
    """(root, the tars' paths relative to root, in pattern order): root is `root` or the
    folder the tars share."""
    paths = [Path(p) for p in brace_expand(pattern)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"--shards {pattern}: {len(missing)} of {len(paths)} tar files not found "
                                f"(first: {missing[0]})")
    base = Path(root) if root else Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    try:
        return base, [p.resolve().relative_to(base.resolve()).as_posix() for p in paths]
    except ValueError:
        raise ValueError(f"--shards {pattern}: the tars are not all under --image-root {root}") from None


def read_image_list(list_file) -> list:
    """The ids in an image list: one path a line, blank lines skipped, order kept."""
    path = Path(list_file)
    if not path.is_file():
        raise FileNotFoundError(f"--image-list {path}: file not found")
    ids = [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n")]
    return [i for i in ids if i.strip()]


def tar_key(name: str):
    """WebDataset's grouping: (key, kind) of a member name, `a/000123.seg.png` -> ('a/000123', 'seg.png')."""
    folder, _, base = name.rpartition("/")
    stem, dot, kind = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), kind.lower() if dot else ""


# -- who does what -----------------------------------------------------------------------------
def _int(env, name):
    value = env.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r}: expected an integer") from None


def resolve_world(rank=None, world_size=None, env=None):
    """(rank, world size, local rank, where they came from). `--rank/--world-size` first; else
    torchrun's RANK/WORLD_SIZE/LOCAL_RANK; else Slurm's SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID;
    else one process. A Slurm job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT, from
    SLURM_ARRAY_TASK_MIN) multiplies what was found: array task a of A, each with W processes,
    holds ranks a*W .. a*W+W-1 of A*W (a job array of one-process tasks: rank a of A)."""
    env = os.environ if env is None else env
    local = _int(env, "LOCAL_RANK")
    if local is None:
        local = _int(env, "SLURM_LOCALID") or 0
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("give --rank and --world-size together")
        found = (rank, world_size, local, "--rank/--world-size")
    elif _int(env, "WORLD_SIZE") is not None:
        found = (_int(env, "RANK") or 0, _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK") or 0, "torchrun")
    elif _int(env, "SLURM_NTASKS") is not None and _int(env, "SLURM_PROCID") is not None:
        found = (_int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"), _int(env, "SLURM_LOCALID") or 0, "Slurm")
    else:
        found = (0, 1, local, "one process")
    task, count = _int(env, "SLURM_ARRAY_TASK_ID"), _int(env, "SLURM_ARRAY_TASK_COUNT")
    if found[3] != "--rank/--world-size" and task is not None and count is not None:
        task -= _int(env, "SLURM_ARRAY_TASK_MIN") or 0
        if not 0 <= task < count:
            raise ValueError(f"SLURM_ARRAY_TASK_ID {task + (_int(env, 'SLURM_ARRAY_TASK_MIN') or 0)} is not one "
                             f"of {count} contiguous tasks (use --array=0-{count - 1} without a step, or give "
                             "--rank and --world-size)")
        r, w, local, source = found
        found = (task * w + r, count * w, local, f"Slurm job array ({source})" if w > 1 else "Slurm job array")
    r, w = found[0], found[1]
    if w < 1 or not 0 <= r < w:
        raise ValueError(f"rank {r} of world size {w} ({found[3]}): expected 0 <= rank < world size")
    return found


def owner(shard_index: int, world_size: int) -> int:
    """The rank that writes shard `shard_index`."""
    return shard_index % world_size


def my_shards(plan: dict, rank: int, world_size: int) -> list:
    return [s for s in plan["shards"] if owner(s["index"], world_size) == rank]


# -- the plan ----------------------------------------------------------------------------------
def _ids_bytes(ids) -> bytes:
    return "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ids).encode("utf-8")


def make_plan(identity: dict, kind: str, shard_size: int, ids=None, tars=None):
    """(manifest, the bytes of images.jsonl or None). kind: folder or list (`ids`, cut into
    shards of `shard_size`) or tar (`tars`, one shard each)."""
    if kind == "tar":
        shards = [{"index": i, "tar": name} for i, name in enumerate(tars)]
        listing, data = None, None
    else:
        if shard_size < 1:
            raise ValueError(f"--shard-size {shard_size}: expected 1 or more")
        shards = [{"index": i, "start": start, "end": min(start + shard_size, len(ids))}
                  for i, start in enumerate(range(0, len(ids), shard_size))]
        data = _ids_bytes(ids)
        listing = {"file": IMAGES, "count": len(ids), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {"plan_format": PLAN_FORMAT, "identity": identity,
                "input": {"kind": kind, "shard_size": None if kind == "tar" else shard_size, "images": listing},
                "labels": identity.get("labels"), "shards": shards}
    return manifest, data


def identity_differences(before: dict, now: dict) -> list:
    return [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]


def check_plan(plan: dict, identity: dict, kind: str, out_dir, tars=None) -> None:
    """Refuse a plan made for another run, naming what differs."""
    where = Path(out_dir) / MANIFEST
    if plan.get("plan_format") != PLAN_FORMAT:
        raise PlanError(f"{where}: plan format {plan.get('plan_format')}, this hiprompt writes {PLAN_FORMAT}")
    differences = identity_differences(plan["identity"], identity)
    if differences:
        shown = "; ".join(f"{k}: {_short(plan['identity'].get(k))} in the plan, {_short(identity.get(k))} now"
                          for k in differences)
        raise PlanError(f"{out_dir} was planned for another run ({shown}): write to another --out-dir, "
                        "or rerun with the plan's settings")
    if plan["input"]["kind"] != kind:
        raise PlanError(f"{out_dir} was planned for {plan['input']['kind']} input, this run gives {kind} "
                        "input: write to another --out-dir")
    if tars is not None and [s["tar"] for s in plan["shards"]] != list(tars):
        planned = [s["tar"] for s in plan["shards"]]
        raise PlanError(f"{out_dir} was planned for {len(planned)} tars ({planned[0]} ...), --shards names "
                        f"{len(tars)} others: give the same --shards, or write to another --out-dir")


def _short(value, width=60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[:width] + "..."


def write_plan(out_dir, manifest: dict, ids_data) -> None:
    """images.jsonl first, then manifest.json (the commit mark), each atomically."""
    out = Path(out_dir)
    if ids_data is not None:
        atomic_write_bytes(out / IMAGES, ids_data)
    with writing(out / PARTS, "nothing was written yet"):
        (out / PARTS).mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MANIFEST, manifest)


def read_plan(out_dir) -> dict:
    path = Path(out_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no plan (not a folder written by `hiprompt tag --out-dir`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: not a plan ({error})") from None


def wait_for_plan(out_dir, timeout: float, poll: float = 0.5, rank: int = None) -> dict:
    """The plan rank 0 writes, polled for up to `timeout` seconds."""
    path = Path(out_dir) / MANIFEST
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: waited {timeout:g} s for {path}, which rank 0 writes: is rank 0 "
                               "running, on the same shared file system? (For job arrays and preemptible "
                               "jobs make the plan first: `hiprompt tag --plan-only ...`; --plan-timeout "
                               "waits longer)")
        time.sleep(poll)
    return read_plan(out_dir)


def shard_ids(out_dir, plan: dict) -> list:
    """The planned image ids (folder and list inputs), checked against the manifest."""
    listing = plan["input"]["images"]
    path = Path(out_dir) / listing["file"]
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != listing["sha256"]:
        raise PlanError(f"{path} is not the image list its plan ({MANIFEST}) was made with: it was changed; "
                        "write to another --out-dir")
    return [json.loads(line) for line in data.decode("utf-8").split("\n") if line]


# -- parts -------------------------------------------------------------------------------------
def part_path(out_dir, index: int, fmt: str) -> Path:
    return Path(out_dir) / PARTS / f"part-{index:06d}.{fmt}"


def is_done(out_dir, index: int, fmt: str) -> bool:
    return part_path(out_dir, index, fmt).is_file()


def _score(value: float) -> float:
    return float(f"{value:.6g}")  # as the single-file output writes them


def part_bytes(rows, fmt: str, labels) -> bytes:
    """rows: (id, ok, error, labels, top_k, scores [C] or None) in plan order."""
    if fmt == "parquet":
        return _parquet_bytes(rows, labels)
    buffer = io.StringIO(newline="")
    if fmt == "csv":
        writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)  # a lone \r: see PredictionFile
        writer.writerow(PART_COLUMNS)
        for image_id, ok, error, chosen, top, scores in rows:
            row = [image_id, int(bool(ok)), error or "", "|".join(chosen), "|".join(top),
                   "|".join(repr(_score(s)) for s in scores) if ok else ""]
            (quoted if any("\r" in str(field) for field in row) else writer).writerow(row)
    elif fmt == "jsonl":
        for image_id, ok, error, chosen, top, scores in rows:
            buffer.write(json.dumps({"id": image_id, "ok": bool(ok), "error": error or None, "labels": list(chosen),
                                     "top_k": list(top), "scores": [_score(s) for s in scores] if ok else None},
                                    ensure_ascii=False) + "\n")
    else:
        raise ValueError(f"part format {fmt!r}: expected one of {PART_FORMATS}")
    return buffer.getvalue().encode("utf-8")


def pyarrow_or_none():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return None
    return pyarrow


def _parquet_bytes(rows, labels) -> bytes:
    pa = pyarrow_or_none()
    if pa is None:
        raise ValueError("--format parquet needs pyarrow: pip install 'hiprompt[scale]' (or pyarrow>=14)")
    import pyarrow.parquet as pq

    rows = list(rows)
    table = pa.table({
        "id": pa.array([r[0] for r in rows], pa.string()),
        "ok": pa.array([bool(r[1]) for r in rows], pa.bool_()),
        "error": pa.array([r[2] or None for r in rows], pa.string()),
        "labels": pa.array([list(r[3]) for r in rows], pa.list_(pa.string())),
        "top_k": pa.array([list(r[4]) for r in rows], pa.list_(pa.string())),
        "scores": pa.array([[_score(s) for s in r[5]] if r[1] else None for r in rows], pa.list_(pa.float64())),
    }).replace_schema_metadata({"labels": json.dumps(list(labels), ensure_ascii=False)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_part(out_dir, index: int, rows, fmt: str, labels) -> Path:
    """Write shard `index`'s part whole: a temporary name, flushed and fsynced, renamed into place."""
    path = part_path(out_dir, index, fmt)
    atomic_write_bytes(path, part_bytes(rows, fmt, labels))
    return path


def read_part(path, fmt: str) -> list:
    """A part's rows as dicts with the PART_COLUMNS (scores: floats, or None when not ok)."""
    path = Path(path)
    if fmt == "parquet":
        pa = pyarrow_or_none()
        if pa is None:
            raise ValueError(f"{path}: reading Parquet parts needs pyarrow: pip install 'hiprompt[scale]'")
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if fmt == "jsonl":
        return [json.loads(line) for line in text.split("\n") if line]
    records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    if not records or tuple(records[0]) != PART_COLUMNS:
        raise ValueError(f"{path}: not a part (its header is not {','.join(PART_COLUMNS)})")
    return [{"id": r[0], "ok": r[1] == "1", "error": r[2] or None, "labels": r[3].split("|") if r[3] else [],
             "top_k": r[4].split("|") if r[4] else [], "scores": [float(s) for s in r[5].split("|")] if r[1] == "1"
             else None} for r in records[1:]]


# -- the end: status, report, merge -----------------------------------------------------------
def progress(out_dir) -> dict:
    """Done and total shards; images in the done shards, and in all (folder and list inputs:
    the plan knows them; tars: counted in their parts once written)."""
    plan = read_plan(out_dir)
    fmt = plan["identity"]["format"]
    done = [s for s in plan["shards"] if is_done(out_dir, s["index"], fmt)]
    known = plan["input"]["kind"] != "tar"
    return {"shards_done": len(done), "shards": len(plan["shards"]),
            "images_done": sum(s["end"] - s["start"] if known
                               else len(read_part(part_path(out_dir, s["index"], fmt), fmt)) for s in done),
            "images": plan["input"]["images"]["count"] if known else None,
            "complete": (Path(out_dir) / SUCCESS).is_file(), "format": fmt, "kind": plan["input"]["kind"]}


def missing_shards(out_dir, plan: dict) -> list:
    fmt = plan["identity"]["format"]
    return [s["index"] for s in plan["shards"] if not is_done(out_dir, s["index"], fmt)]


def finish_if_complete(out_dir, plan: dict) -> bool:
    """When every part is there: report.json (counts, unreadable images with the reason) and
    then _SUCCESS, each atomically (their bytes depend on the parts only, so two processes
    finishing at once write the same). Returns whether the run is complete."""
    out = Path(out_dir)
    if missing_shards(out, plan):
        return False
    if (out / SUCCESS).is_file():
        return True
    fmt = plan["identity"]["format"]
    images, unreadable = 0, []
    for shard in plan["shards"]:
        for row in read_part(part_path(out, shard["index"], fmt), fmt):
            images += 1
            if not row["ok"]:
                unreadable.append({"id": row["id"], "shard": shard["index"], "error": row["error"]})
    report = {"shards": len(plan["shards"]), "images": images, "scored": images - len(unreadable),
              "unreadable_count": len(unreadable), "unreadable": unreadable}
    atomic_write_json(out / REPORT, report)
    atomic_write_text(out / SUCCESS, json.dumps({k: v for k, v in report.items() if k != "unreadable"}) + "\n")
    return True


def merge(out_dir, destination) -> dict:
    """Concatenate the parts in plan order into the single-file format of `hiprompt tag --out`
    (`.csv`: path, labels, top_k, one column per label; `.jsonl`: {path, scores, labels,
    top_k}); unreadable images are left out (they are in report.json). Written atomically."""
    plan = read_plan(out_dir)
    missing = missing_shards(out_dir, plan)
    if missing:
        raise ValueError(f"{out_dir}: {len(missing)} of {len(plan['shards'])} shards are not done yet (first: "
                         f"{missing[0]}): run the tagging again to finish them, then merge")
    fmt, labels = plan["identity"]["format"], list(plan["labels"])
    destination = Path(destination)
    kind = destination.suffix.lower()
    if kind not in (".csv", ".jsonl"):
        raise ValueError(f"--merge {destination}: expected a .csv or .jsonl file name")
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    if kind == ".csv":
        writer.writerow(["path", "labels", "top_k", *labels])
    rows = unreadable = 0
    for shard in plan["shards"]:
        for row in read_part(part_path(out_dir, shard["index"], fmt), fmt):
            if not row["ok"]:
                unreadable += 1
                continue
            rows += 1
            values = [_score(s) for s in row["scores"]]
            if kind == ".csv":
                fixed = [row["id"], "|".join(row["labels"]), "|".join(row["top_k"])]
                (quoted if any("\r" in f for f in fixed) else writer).writerow([*fixed, *values])
            else:
                buffer.write(json.dumps({"path": row["id"], "scores": dict(zip(labels, values)),
                                         "labels": row["labels"], "top_k": row["top_k"]}, ensure_ascii=False) + "\n")
    atomic_write_bytes(destination, buffer.getvalue().encode("utf-8"))
    return {"rows": rows, "unreadable": unreadable, "shards": len(plan["shards"])}
