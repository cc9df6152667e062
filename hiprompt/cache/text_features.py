"""Frozen description features: a ragged memory-mapped store on disk, or encoded per batch.

Every description's features are its end-of-text feature [D] (float32) and the per-token
features of its content, start-of-text excluded, up to and including end-of-text [n_i, D]
(float16), each description with its own length n_i. A batch gathers them padded to its
longest description, with a mask.

Store (`<cache>/text/<key>/`, key = backbone identity, the texts, chunk size, format):
`chunk-<k>.tokens.npy` [tokens of the chunk, D] float16, `chunk-<k>.offsets.npy` [n + 1]
int64 (where each description's tokens begin), `chunk-<k>.eot.npy` [n, D] float32, written
in this order through temporary files; the eot file completes a chunk. `meta.json`, written
last, marks the store complete. Chunks are written one at a time (never the corpus in RAM),
an interrupted build resumes at its first missing chunk, and the finished store is
memory-mapped, so memory does not grow with the corpus.

When the store would exceed the budget (`DATASET.TEXT.FEATURE_BUDGET_GB`), each batch's
descriptions are encoded when they are drawn instead (frozen encoder, no gradient, up to
the batch's longest end-of-text) and rounded as the store rounds them: both modes give the
same features.
"""

import hashlib
import logging
import mmap
from pathlib import Path

import numpy as np
import torch
from numpy.lib import format as npy_format
from tqdm import tqdm

from hiprompt.fileio import atomic_write_json

log = logging.getLogger(__name__)

STORE_FORMAT = 2  # ragged chunks (format 1: one padded array)
CHUNK_SIZE = 2048  # descriptions per chunk file
ENCODE_BATCH = 256  # descriptions per encoder call
ESTIMATE_SAMPLE = 1000  # descriptions tokenised to estimate the store's size


def encode_descriptions(clip, texts, device="cpu"):
    """(eot [n, D] float32, tokens [n, T, D] float16, lengths [n]) of a few descriptions,
    on the CPU; T = the longest content, token i of a description is its position i + 1."""
    return encode_token_ids(clip, clip.tokenize(texts), device)


@torch.no_grad()
def encode_token_ids(clip, token_ids, device="cpu"):
    """`encode_descriptions` of descriptions already tokenised: token_ids [n, 77]."""
    token_ids = token_ids.to(device)
    eot, per_token, _ = clip.encode_text(token_ids, truncate=True)  # [n, D], [n, T + 1, D]
    return eot.float().cpu(), per_token[:, 1:].half().cpu(), clip.eot_positions(token_ids).cpu()


def padded_batch(eot, token_rows):
    """(eot [B, D], tokens [B, T, D] float32, mask [B, T]) from per-description token rows [n_i, D]."""
    lengths = torch.tensor([len(rows) for rows in token_rows])
    tokens = torch.zeros(len(token_rows), int(lengths.max()), eot.shape[1])  # [B, T, D]
    for i, rows in enumerate(token_rows):
        tokens[i, :len(rows)] = torch.from_numpy(np.asarray(rows, dtype=np.float32))  # a float32 copy
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]  # [B, T]
    return eot, tokens, mask


class DescriptionFeatures:
    """What a training step reads: `batch(index)` for indices into the corpus."""

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, index):
        """index [B] -> (eot [B, D] float32, tokens [B, T, D] float32, mask [B, T] bool) on the CPU."""
        raise NotImplementedError

    def batches(self, index, size: int = ENCODE_BATCH):
        """`batch` over consecutive slices of `index` (for evaluation)."""
        for start in range(0, len(index), size):
            yield self.batch(index[start:start + size])


def _map_npy(path: Path):
    """(array, mapping): a read-only memory map of an .npy file and the array over it."""
    with open(path, "rb") as handle:
        version = npy_format.read_magic(handle)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        start = handle.tell()
    if fortran:
        raise ValueError(f"{path}: a Fortran-ordered array, not written by this module")
    count = int(np.prod(shape))
    return np.frombuffer(mapping, dtype=dtype, count=count, offset=start).reshape(shape), mapping


class FeatureStore(DescriptionFeatures):
    """The finished store of a folder, memory-mapped. After each batch its pages are let go
    of (MADV_DONTNEED: they stay in the page cache, outside the process), so the resident
    memory does not grow with the part of the store read so far."""

    def __init__(self, folder: Path, count: int, chunk_size: int):
        self.folder, self.count, self.chunk_size = folder, count, chunk_size
        self._chunks = {}

    def __len__(self) -> int:
        return self.count

    def _chunk(self, k: int):
        if k not in self._chunks:
            stem = self.folder / f"chunk-{k:06d}"
            # [n, D], [n + 1], [tokens, D] with their mappings
            self._chunks[k] = [_map_npy(Path(f"{stem}.{part}.npy")) for part in ("eot", "offsets", "tokens")]
        return [array for array, _ in self._chunks[k]]

    def batch(self, index):
        eots, rows, touched = [], [], set()
        for i in torch.as_tensor(index).tolist():
            if not 0 <= i < self.count:
                raise IndexError(f"description {i} of a store of {self.count} ({self.folder})")
            eot, offsets, tokens = self._chunk(i // self.chunk_size)
            touched.add(i // self.chunk_size)
            j = i % self.chunk_size
            eots.append(eot[j])
            rows.append(tokens[offsets[j]:offsets[j + 1]])
        result = padded_batch(torch.from_numpy(np.stack(eots)).float(), rows)  # copies every row
        for k in touched:
            for _, mapping in self._chunks[k]:
                mapping.madvise(mmap.MADV_DONTNEED)
        return result


class OnTheFlyFeatures(DescriptionFeatures):
    """Encodes each batch's descriptions when it is drawn (no store)."""

    def __init__(self, clip, texts, device="cpu"):
        self.clip, self.texts, self.device = clip, texts, device

    def __len__(self) -> int:
        return len(self.texts)

    def batch(self, index):
        eot, tokens, lengths = encode_descriptions(self.clip, [self.texts[i] for i in torch.as_tensor(index).tolist()],
                                                   self.device)
        return padded_batch(eot, [tokens[i, :n] for i, n in enumerate(lengths.tolist())])


def store_folder(clip, texts, cache_dir, chunk_size: int = CHUNK_SIZE) -> Path:
    """The cache folder of these features: keyed by everything that determines them. Each
    text ends with a NUL; a NUL or backslash inside a text is escaped first, so that no two
    lists of texts share a key (["a\\0b"] is not ["a", "b"])."""
    digest = hashlib.sha256(f"{clip.identity()}\0format{STORE_FORMAT}\0chunk{chunk_size}\0".encode())
    for text in texts:
        digest.update(text.replace("\\", "\\\\").replace("\0", "\\0").encode("utf-8") + b"\0")
    return Path(cache_dir) / "text" / digest.hexdigest()[:24]


def estimated_store_bytes(clip, texts) -> int:
    """The store's size on disk, from the token counts of an evenly spaced sample."""
    count = len(texts)
    sample = [texts[i] for i in np.linspace(0, count - 1, min(count, ESTIMATE_SAMPLE)).astype(int).tolist()]
    mean_tokens = float(clip.eot_positions(clip.tokenize(sample)).float().mean())
    return int(count * (mean_tokens * clip.embed_dim * 2 + clip.embed_dim * 4 + 8))


def _save_array(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def build_store(clip, texts, folder: Path, chunk_size: int = CHUNK_SIZE, device="cpu", progress=True) -> FeatureStore:
    """Encode `texts` into the store at `folder`, chunk by chunk, skipping finished chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    count = len(texts)
    n_chunks = (count + chunk_size - 1) // chunk_size
    done = [k for k in range(n_chunks) if (folder / f"chunk-{k:06d}.eot.npy").is_file()]
    if done:
        log.info("description features: resuming %s with %d of %d chunks present", folder, len(done), n_chunks)
    clip.to(device)
    bar = tqdm(total=count, initial=min(len(done) * chunk_size, count), desc="encoding descriptions",
               disable=not progress)
    for k in sorted(set(range(n_chunks)) - set(done)):
        chunk = [texts[i] for i in range(k * chunk_size, min((k + 1) * chunk_size, count))]
        token_ids = clip.tokenize(chunk)  # [n, 77], once a chunk
        # encoded shortest first, so each encoder call stops near its own rows' end-of-text
        by_length = clip.eot_positions(token_ids).argsort(stable=True).tolist()
        eots, rows = [None] * len(chunk), [None] * len(chunk)
        for start in range(0, len(chunk), ENCODE_BATCH):
            part = by_length[start:start + ENCODE_BATCH]
            eot, tokens, lengths = encode_token_ids(clip, token_ids[part], device)
            for j, (i, n) in enumerate(zip(part, lengths.tolist())):
                eots[i], rows[i] = eot[j].numpy(), tokens[j, :n].numpy()
            bar.update(len(part))
        offsets = np.cumsum([0] + [len(r) for r in rows], dtype=np.int64)  # [n + 1]
        stem = folder / f"chunk-{k:06d}"
        _save_array(Path(f"{stem}.tokens.npy"), np.concatenate(rows))  # [chunk tokens, D] float16
        _save_array(Path(f"{stem}.offsets.npy"), offsets)
        _save_array(Path(f"{stem}.eot.npy"), np.stack(eots))  # [n, D] float32, completes the chunk
    bar.close()
    atomic_write_json(folder / "meta.json", {"backbone": clip.identity(), "count": count, "chunk_size": chunk_size,
                                             "chunks": n_chunks, "format": STORE_FORMAT})
    return FeatureStore(folder, count, chunk_size)


def text_features(clip, texts, cache_dir, budget_bytes: float = float("inf"), device="cpu",
                  chunk_size: int = CHUNK_SIZE, progress=True) -> DescriptionFeatures:
    """The description features of `texts`: the store (found, or built when its estimated
    size is within `budget_bytes`), else encoding on the fly."""
    if len(texts) == 0:
        raise ValueError("no descriptions to encode: the text corpus is empty")
    folder = store_folder(clip, texts, cache_dir, chunk_size)
    if (folder / "meta.json").is_file():
        log.info("description features from cache %s", folder)
        return FeatureStore(folder, len(texts), chunk_size)
    estimate = estimated_store_bytes(clip, texts)
    if estimate > budget_bytes:
        log.info("description features: a store would take about %.1f GB, over the budget of %.1f GB "
                 "(DATASET.TEXT.FEATURE_BUDGET_GB); encoding each batch on the fly", estimate / 1e9, budget_bytes / 1e9)
        return OnTheFlyFeatures(clip, texts, device)
    return build_store(clip, texts, folder, chunk_size, device, progress)
