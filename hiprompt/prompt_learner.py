"""Hierarchical prompts (paper §3.3): one learner whose special cases are the baselines.

A class prompt is `[SOT] t_1 … t_M <class name> . [EOT]`, with the M context vectors made of
four kinds, in this order: shared by all classes (S), shared within a coarse group (P-S #1),
within a fine group (P-S #2), and class-specific (C-S). A class in no group at a level gets
its own vectors in that slot. All-S is CoOp, all-C-S is CSC, and M = 0 is the hand-crafted
prompt `TEMPLATE.format(name)`. After learned tokens stands the class label Y_i as the
paper writes it (`label`), or the readable name of the hand-crafted prompts (`prompt`:
"mouse" -> "computer mouse"); the hand-crafted prompt always uses the readable name.
"""

from collections import OrderedDict

import torch
from torch import nn

from .classnames import label_phrase, prompt_name
from .prompt_tree import PromptTree

TOKEN_KINDS = ("shared", "coarse", "fine", "class")
PROMPT_ENCODINGS = ("tree", "truncated", "full")  # same values; tree is the fastest
LEARNED_NAMES = {"label": label_phrase, "prompt": prompt_name}  # the name after learned tokens


def slot_assignment(classnames, groups) -> torch.Tensor:
    """[C] slot id per class for one partial-sharing level: one slot per group, then one per
    class outside every group. A class listed in several groups takes the first."""
    slots = {}
    for group_id, group in enumerate(groups):
        for name in group:
            slots.setdefault(name, group_id)
    next_slot = len(groups)
    ids = []
    for name in classnames:
        if name not in slots:
            slots[name] = next_slot
            next_slot += 1
        ids.append(slots[name])
    # renumber densely so that unused group ids leave no parameters behind
    _, dense = torch.unique(torch.tensor(ids), return_inverse=True)
    return dense


class HierarchicalContext(nn.Module):
    """One set (global or local) of learnable context vectors and their sharing structure."""

    def __init__(self, counts: dict, slots: dict, width: int, std: float):
        super().__init__()
        self.counts = OrderedDict((kind, counts[kind]) for kind in TOKEN_KINDS if counts[kind] > 0)
        self.vectors = nn.ParameterDict()
        for kind, count in self.counts.items():
            n_slots = int(slots[kind].max()) + 1
            self.vectors[kind] = nn.Parameter(torch.randn(n_slots, count, width) * std)  # [slots, n, W]
            self.register_buffer(f"slots_{kind}", slots[kind].clone())

    @property
    def length(self) -> int:
        return sum(self.counts.values())

    def forward(self) -> torch.Tensor:
        parts = [self.vectors[kind][getattr(self, f"slots_{kind}")] for kind in self.counts]  # [C, n, W] each
        return torch.cat(parts, dim=1)  # [C, M, W]


class ClassPromptEncoder(nn.Module):
    """Turns context vectors into class embeddings through the frozen text encoder."""

    def __init__(self, clip, classnames, n_ctx: int, template: str, learned_name: str = "label"):
        super().__init__()
        if learned_name not in LEARNED_NAMES:
            raise ValueError(f"TRAINER.HIPROMPT.LEARNED_NAME={learned_name!r}: expected one of {sorted(LEARNED_NAMES)}")
        # The frozen CLIP is referenced, not registered: it is no part of the prompt's state.
        self._clip = [clip]
        self.n_ctx = n_ctx
        if n_ctx > 0:
            name_of = LEARNED_NAMES[learned_name]
            texts = [" ".join(["X"] * n_ctx) + f" {name_of(c)}." for c in classnames]
        else:
            texts = [template.format(prompt_name(c)) for c in classnames]
        tokens = clip.tokenize(texts)  # [C, L]
        with torch.no_grad():
            embedded = clip.token_embeddings(tokens)  # [C, L, W]
        self.register_buffer("prefix", embedded[:, :1].clone(), persistent=False)  # SOT
        self.register_buffer("suffix", embedded[:, 1 + n_ctx:].clone(), persistent=False)  # name . EOT pad
        self.register_buffer("eot_index", clip.eot_positions(tokens), persistent=False)
        self.length = int(self.eot_index.max()) + 1  # positions up to the longest end-of-text

    def forward(self, context: torch.Tensor = None) -> torch.Tensor:
        """context: [C, M, W] or None (M = 0). Returns class embeddings [C, D] (the full
        77-position forward)."""
        parts = [self.prefix] + ([context.to(self.prefix.dtype)] if context is not None else []) + [self.suffix]
        embedded = torch.cat(parts, dim=1)  # [C, L, W]
        eot, _ = self._clip[0].encode_text_embeddings(embedded, self.eot_index)
        return eot

    def encode_sets(self, contexts: torch.Tensor = None) -> torch.Tensor:
        """Several prompt sets in one call, up to the longest end-of-text only.
        contexts: [S, C, M, W], or None (M = 0, one set). Returns [S, C, D]."""
        num_classes = self.prefix.shape[0]
        n_sets = 1 if contexts is None else contexts.shape[0]
        parts = [self.prefix.repeat(n_sets, 1, 1)]
        if contexts is not None:
            parts.append(contexts.reshape(n_sets * num_classes, *contexts.shape[2:]).to(self.prefix.dtype))
        parts.append(self.suffix[:, :self.length - 1 - self.n_ctx].repeat(n_sets, 1, 1))
        embedded = torch.cat(parts, dim=1)  # [S * C, length, W]
        eot, _ = self._clip[0].encode_text_embeddings(embedded, self.eot_index.repeat(n_sets), self.length)
        return eot.reshape(n_sets, num_classes, -1)


def context_counts(hp) -> dict:
    return {"shared": hp.N_CTX_SHARED, "coarse": hp.N_CTX_COARSE, "fine": hp.N_CTX_FINE, "class": hp.N_CTX_CLASS}


class HierarchicalPromptLearner(nn.Module):
    """Global and local hierarchical prompts for `classnames` (two independent sets).

    encoding: how the class embeddings are computed, all giving the same values:
    `tree` (both sets in one call, up to the longest end-of-text, each shared prefix once:
    hiprompt/prompt_tree.py), `truncated` (both sets in one call up to the longest
    end-of-text), `full` (each set on its own at the full context length).
    """

    def __init__(self, clip, classnames, groups: dict, counts: dict, template: str,
                 std: float = 0.02, local_branch: bool = True, learned_name: str = "label",
                 encoding: str = "tree"):
        super().__init__()
        if encoding not in PROMPT_ENCODINGS:
            raise ValueError(f"TRAINER.HIPROMPT.PROMPT_ENCODING={encoding!r}: expected one of {PROMPT_ENCODINGS}")
        for kind in counts:
            if kind not in TOKEN_KINDS or counts[kind] < 0:
                raise ValueError(f"context counts {counts}: expected non-negative counts of {TOKEN_KINDS}")
        num_classes = len(classnames)
        slots = {
            "shared": torch.zeros(num_classes, dtype=torch.long),
            "coarse": slot_assignment(classnames, groups.get("coarse", [])),
            "fine": slot_assignment(classnames, groups.get("fine", [])),
            "class": torch.arange(num_classes),
        }
        width = clip.token_width
        self.global_context = HierarchicalContext(counts, slots, width, std)
        self.local_context = HierarchicalContext(counts, slots, width, std) if local_branch else None
        self.encoder = ClassPromptEncoder(clip, classnames, self.global_context.length, template, learned_name)
        self.encoding = encoding if self.learnable else "truncated"
        self.tree = None
        if self.encoding == "tree":
            encoder = self.encoder
            self.tree = PromptTree(clip, self.global_context.counts, slots, encoder.prefix[0, 0],
                                   encoder.suffix[:, :encoder.length - 1 - encoder.n_ctx], encoder.eot_index,
                                   n_sets=1 if self.local_context is None else 2)

    @property
    def learnable(self) -> bool:
        return self.global_context.length > 0

    def contexts(self) -> torch.Tensor:
        """[S, C, M, W]: the global set's context vectors, then the local set's if any."""
        sets = [self.global_context] + ([self.local_context] if self.local_context is not None else [])
        return torch.stack([context() for context in sets])

    def class_embeddings(self):
        """(global [C, D], local [C, D]); the local ones are the global ones without a local branch."""
        if self.encoding == "full":
            global_emb = self.encoder(self.global_context() if self.learnable else None)
            local_emb = self.encoder(self.local_context()) if self.local_context is not None else global_emb
            return global_emb, local_emb
        if self.encoding == "tree":
            embeddings = self.tree(self.contexts())  # [S, C, D]
        else:
            embeddings = self.encoder.encode_sets(self.contexts() if self.learnable else None)  # [S, C, D]
        return embeddings[0], embeddings[-1]
