"""Scene groups that carry structure: detect a degenerate LLM grouping, and the fallback.

Small LLMs often answer the grouping question (Π4) with one group holding every class, or
group almost nothing; the partially shared tokens then carry no structure. `degenerate`
says when a coarse grouping is of that kind. The fallback, `embedding_groups`, clusters
the classes by the frozen CLIP text encoder's features of their hand-crafted prompts
(`TEMPLATE.format(name)`), agglomeratively (Ward linkage on unit vectors, i.e. on cosine
geometry) at two levels: coarse groups of about `coarse_size` classes, then each coarse
group of three or more classes split into fine groups of about `fine_size` (a two-class
coarse group is its own fine group, as in the LLM path). A class alone in its cluster is
in no group at that level (it keeps its own tokens there).

Which source made the groups is one of `SOURCES`: `llm` (the first answer), `llm-retry`
(a re-ask with sampling) or `embedding`; `GroupingOptions.source` chooses `auto` (LLM,
re-asked, then embeddings), `llm` (the first answer, whatever it is) or `embedding`.
"""

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from hiprompt.classnames import prompt_name
from hiprompt.config import get_cfg_default

CHOICES = ("auto", "llm", "embedding")
SOURCES = ("llm", "llm-retry", "embedding")


@dataclass(frozen=True)
class GroupingOptions:
    """How the scene groups are made (see the module docstring).

    source: auto | llm | embedding. retries: re-asks of a degenerate LLM grouping, each
    sampled at `temperature` with its own seed (derived from the counts' seed).
    max_share: a coarse group holding more than this share of the classes is degenerate;
    min_grouped: so is a grouping that leaves more than 1 - min_grouped of them ungrouped.
    min_classes: fewer classes are never degenerate (a handful of classes may well share one
    scene).
    backbone, weights, template: the frozen text encoder of the fallback
    (`hiprompt.clip.backbone.build_clip(backbone, weights)`) and the hand-crafted prompt
    (`TRAINER.HIPROMPT.TEMPLATE`'s default). coarse_size, fine_size: classes per group the
    fallback aims at (the paper's COCO groups are scene-sized, a handful of classes each).
    """

    source: str = "auto"
    retries: int = 2
    temperature: float = 0.7
    max_share: float = 0.75
    min_grouped: float = 0.5
    min_classes: int = 8
    backbone: str = "RN50"
    weights: str = "openai"
    template: str = get_cfg_default().TRAINER.HIPROMPT.TEMPLATE
    coarse_size: int = 5
    fine_size: int = 3

    def __post_init__(self):
        if self.source not in CHOICES:
            raise ValueError(f"group source {self.source!r}: expected one of {CHOICES}")
        if self.retries < 0 or self.coarse_size < 2 or self.fine_size < 2:
            raise ValueError("group retries must be >= 0 and group sizes >= 2")
        if self.template.count("{}") != 1:
            raise ValueError(f"group template {self.template!r} must hold '{{}}' once")

    def as_dict(self) -> dict:
        return asdict(self)


def degenerate(coarse: List[list], classnames, options: GroupingOptions) -> Optional[str]:
    """Why the coarse grouping carries no structure, or None when it does (see
    `GroupingOptions`)."""
    n = len(classnames)
    if n < options.min_classes:
        return None
    largest = max((len(g) for g in coarse), default=0)
    grouped = sum(len(g) for g in coarse)
    if largest > options.max_share * n:
        return f"one group holds {largest} of {n} classes"
    if grouped < options.min_grouped * n:
        return f"only {grouped} of {n} classes are in a group"
    return None


def _clusters(vectors: np.ndarray, n_clusters: int) -> List[List[int]]:
    """Row indices of `vectors` [N, D] cut into `n_clusters` by Ward linkage on unit vectors;
    clusters in order of their first row, rows in order."""
    if len(vectors) < 2 or n_clusters <= 1:
        return [list(range(len(vectors)))]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # [N, D]
    tree = linkage(unit.astype(np.float64), method="ward")
    labels = fcluster(tree, t=min(n_clusters, len(vectors)), criterion="maxclust")  # [N]
    members: Dict[int, List[int]] = {}
    for row, label in enumerate(labels):
        members.setdefault(int(label), []).append(row)
    return sorted(members.values(), key=lambda rows: rows[0])


def embedding_groups(classnames, embeddings, coarse_size: int = 5, fine_size: int = 3) -> dict:
    """Two-level groups `{"coarse": [...], "fine": [...]}` from class embeddings [C, D]
    (row i belongs to classnames[i]); groups of one class are left out."""
    classnames = list(classnames)
    embeddings = np.asarray(embeddings, dtype=np.float64)  # [C, D]
    if embeddings.shape[0] != len(classnames):
        raise ValueError(f"{embeddings.shape[0]} embeddings for {len(classnames)} classes")
    n_coarse = max(2, round(len(classnames) / coarse_size))
    coarse = [rows for rows in _clusters(embeddings, n_coarse) if len(rows) >= 2]
    fine = []
    for rows in coarse:
        if len(rows) == 2:
            fine.append(rows)
            continue
        n_fine = max(2, round(len(rows) / fine_size))
        for part in _clusters(embeddings[rows], n_fine):
            if len(part) >= 2:
                fine.append([rows[i] for i in part])
    fine.sort(key=lambda rows: rows[0])
    return {"coarse": [[classnames[i] for i in rows] for rows in coarse],
            "fine": [[classnames[i] for i in rows] for rows in fine]}


def fallback_needed(options: GroupingOptions, n_classes: int) -> bool:
    """Whether a run of the groups stage may need the text encoder: always for `embedding`;
    for `auto` when the class set is large enough for a grouping to be degenerate."""
    return options.source == "embedding" or (options.source == "auto" and n_classes >= options.min_classes)


def group_encoder(options: GroupingOptions):
    """The frozen CLIP of the fallback (`options.backbone`, `options.weights`); a ValueError
    of one line saying what is missing and which switches change it when it cannot be built."""
    from hiprompt.clip.backbone import WeightsUnavailableError, build_clip

    try:
        return build_clip(options.backbone, options.weights)
    except (WeightsUnavailableError, FileNotFoundError, RuntimeError, ValueError) as error:
        reason = " ".join(str(error).split()).rstrip(".")  # one line
        needs = ("the groups need" if options.source == "embedding"
                 else "the fallback for degenerate LLM groups needs")
        raise ValueError(
            f"--group-source {options.source}: {needs} the CLIP text encoder of {options.backbone} "
            f"({options.weights!r}), which cannot be built: {reason}. Pass --group-weights FILE (a "
            f"local checkpoint of {options.backbone}) or another --group-backbone/--group-weights, "
            "or --group-source llm to keep the LLM's groups without the fallback"
        ) from error


def clip_text_embeddings(classnames, clip, template: str) -> np.ndarray:
    """The frozen CLIP text features [C, D] of `template.format(prompt_name(c))` per class;
    `clip` from `group_encoder`."""
    texts = [template.format(prompt_name(c)) for c in classnames]
    eot, _, _ = clip.encode_text(clip.tokenize(texts))  # [C, D]
    return eot.float().numpy()
