"""Hierarchical prompts (paper §3.3): one learner whose special cases are the baselines.

A class prompt is `[SOT] t_1 … t_M <class name> . [EOT]`, with the M context vectors made of
four kinds, in this order: shared by all classes (S), shared within a coarse group (P-S #1),
within a fine group (P-S #2), and class-specific (C-S). A class in no group at a level gets
its own vectors in that slot. All-S is CoOp, all-C-S is CSC, and M = 0 is the hand-crafted
prompt `TEMPLATE.format(name)`. After learned tokens stands the class label Y_i as the
paper writes it (`label`), the readable name of the hand-crafted prompts (`prompt`:
"mouse" -> "computer mouse"), or TaI-DPT's name (`taidpt`: "motorcycle" -> "motor bike");
the hand-crafted prompt always uses the readable name.

CoOp's two prompt options: the name may also stand in the middle of the context (the first
M // 2 tokens, the name, the rest) or in front of it (`CLASS_TOKEN_POSITION`), and the last k
context positions may start from the token embeddings of a k-token phrase (`CTX_INIT`).
"""

from collections import OrderedDict

import torch
from torch import nn

from hiprompt.choices import check_choice
from hiprompt.classnames import label_phrase, prompt_name, taidpt_name
from hiprompt.model.prompt_tree import PromptTree

TOKEN_KINDS = ("shared", "coarse", "fine", "class")
PROMPT_ENCODINGS = ("tree", "truncated")  # same values; tree is the fastest
LEARNED_NAMES = {"label": label_phrase, "prompt": prompt_name, "taidpt": taidpt_name}  # the name after learned tokens
CLASS_TOKEN_POSITIONS = ("end", "middle", "front")  # where the name stands (CoOp's CLASS_TOKEN_POSITION)


def context_before_name(n_ctx: int, position: str) -> int:
    """Context tokens before the class name; CoOp's split: `middle` puts n_ctx // 2 first."""
    return {"end": n_ctx, "middle": n_ctx // 2, "front": 0}[position]


def phrase_vectors(clip, phrase: str) -> torch.Tensor:
    """[k, W] the token embeddings of `phrase` (its k tokens between start- and end-of-text);
    an underscore reads as a space, as in CoOp's CTX_INIT."""
    tokens = clip.tokenize([phrase.replace("_", " ")])  # [1, L]
    length = int(clip.eot_positions(tokens)[0]) - 1
    with torch.no_grad():
        return clip.token_embeddings(tokens)[0, 1:1 + length].clone()


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

    @torch.no_grad()
    def initialise_last(self, phrase: torch.Tensor) -> None:
        """Set the last k context positions of every slot to `phrase` [k, W] (k <= M), across
        kinds: position j of the context is kind K's token j - (tokens of the kinds before K)."""
        offset = self.length - phrase.shape[0]  # context position where the phrase begins
        start = 0
        for kind, count in self.counts.items():
            low, high = max(offset, start), start + count  # this kind's positions in the phrase
            if low < high:
                self.vectors[kind][:, low - start:high - start] = phrase[low - offset:high - offset]
            start += count

    def forward(self) -> torch.Tensor:
        parts = [self.vectors[kind][getattr(self, f"slots_{kind}")] for kind in self.counts]  # [C, n, W] each
        return torch.cat(parts, dim=1)  # [C, M, W]


class ClassPromptEncoder(nn.Module):
    """Turns context vectors into class embeddings through the frozen text encoder.

    position: where the name stands among the M context tokens (`CLASS_TOKEN_POSITIONS`):
    `[SOT] t_1 … t_M name . [EOT]` (end), `[SOT] t_1 … t_h name t_h+1 … t_M . [EOT]` with
    h = M // 2 (middle), `[SOT] name t_1 … t_M . [EOT]` (front).
    """

    def __init__(self, clip, classnames, n_ctx: int, template: str, learned_name: str = "label",
                 position: str = "end"):
        super().__init__()
        check_choice(learned_name, LEARNED_NAMES, "TRAINER.HIPROMPT.LEARNED_NAME")
        check_choice(position, CLASS_TOKEN_POSITIONS, "TRAINER.HIPROMPT.CLASS_TOKEN_POSITION")
        # The frozen CLIP is referenced, not registered: it is no part of the prompt's state.
        self._clip = [clip]
        self.n_ctx = n_ctx
        if n_ctx > 0:
            names = [LEARNED_NAMES[learned_name](c) for c in classnames]
            texts = [" ".join(["X"] * n_ctx) + f" {name}." for name in names]
        else:
            texts = [template.format(prompt_name(c)) for c in classnames]
        tokens = clip.tokenize(texts)  # [C, L]
        with torch.no_grad():
            embedded = clip.token_embeddings(tokens)  # [C, L, W]
        # the prompts are built in the `end` order; `order` moves the name to its place
        self.register_buffer("prefix", embedded[:, :1].clone(), persistent=False)  # SOT
        self.register_buffer("suffix", embedded[:, 1 + n_ctx:].clone(), persistent=False)  # name . EOT pad
        self.register_buffer("eot_index", clip.eot_positions(tokens), persistent=False)
        self.length = int(self.eot_index.max()) + 1  # positions up to the longest end-of-text
        before = context_before_name(n_ctx, position)
        order = _name_order(clip, tokens, names, n_ctx, before) if before < n_ctx else None  # [C, L]
        self.register_buffer("order", order, persistent=False)
        self.to(clip.device)  # the index buffers join the embeddings on the CLIP's device

    def place_name(self, embedded: torch.Tensor) -> torch.Tensor:
        """[N, L, W] prompts in the `end` order (N = sets x classes) -> the configured order."""
        if self.order is None:
            return embedded
        n_sets = embedded.shape[0] // self.order.shape[0]
        index = self.order[:, :embedded.shape[1]].repeat(n_sets, 1)  # [N, L]
        return embedded.gather(1, index[:, :, None].expand(-1, -1, embedded.shape[2]))

    def forward(self, context: torch.Tensor = None) -> torch.Tensor:
        """context: [C, M, W] or None (M = 0). Returns class embeddings [C, D] (the full
        77-position forward)."""
        parts = [self.prefix] + ([context.to(self.prefix.dtype)] if context is not None else []) + [self.suffix]
        embedded = self.place_name(torch.cat(parts, dim=1))  # [C, L, W]
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
        embedded = self.place_name(torch.cat(parts, dim=1))  # [S * C, length, W]
        eot, _ = self._clip[0].encode_text_embeddings(embedded, self.eot_index.repeat(n_sets), self.length)
        return eot.reshape(n_sets, num_classes, -1)


def _name_order(clip, tokens: torch.Tensor, names, n_ctx: int, before: int) -> torch.Tensor:
    """[C, L] for each position of a prompt, the position of the `end`-order prompt it takes:
    SOT, the first `before` context tokens, the name, the other context tokens, the rest.
    tokens: [C, L] the `end`-order prompts, names: the names in them."""
    name_tokens = clip.tokenize(names)  # [C, L]
    name_lengths = clip.eot_positions(name_tokens) - 1  # [C]
    length = tokens.shape[1]
    rows = []
    for c, n_name in enumerate(name_lengths.tolist()):
        if n_name < 1 or not torch.equal(tokens[c, 1 + n_ctx:1 + n_ctx + n_name], name_tokens[c, 1:1 + n_name]):
            raise ValueError(f"class name {names[c]!r}: its tokens alone differ from its tokens in the prompt; "
                             "TRAINER.HIPROMPT.CLASS_TOKEN_POSITION end does not need them")
        name_end = 1 + n_ctx + n_name
        rows.append(list(range(1 + before)) + list(range(1 + n_ctx, name_end))
                    + list(range(1 + before, 1 + n_ctx)) + list(range(name_end, length)))
    return torch.tensor(rows, dtype=torch.long)


def context_counts(hp) -> dict:
    return {"shared": hp.N_CTX_SHARED, "coarse": hp.N_CTX_COARSE, "fine": hp.N_CTX_FINE, "class": hp.N_CTX_CLASS}


class HierarchicalPromptLearner(nn.Module):
    """Global and local hierarchical prompts for `classnames` (two independent sets).

    encoding: how the class embeddings are computed, all giving the same values:
    `tree` (both sets in one call, up to the longest end-of-text, each shared prefix once:
    hiprompt/model/prompt_tree.py), `truncated` (both sets in one call up to the longest
    end-of-text). Both equal each set's own forward at the full context length
    (`self.encoder(context)`, tests/test_prompt_tree.py). The tree needs the context before
    the name (position `end`); `middle` and `front` use `truncated` for it.

    ctx_init: a phrase whose k token embeddings start the last k context positions of every
    slot of both sets ("" = all random); position: where the name stands (ClassPromptEncoder).
    """

    def __init__(self, clip, classnames, groups: dict, counts: dict, template: str,
                 std: float = 0.02, local_branch: bool = True, learned_name: str = "label",
                 encoding: str = "tree", ctx_init: str = "", position: str = "end"):
        super().__init__()
        check_choice(encoding, PROMPT_ENCODINGS, "TRAINER.HIPROMPT.PROMPT_ENCODING")
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
        if ctx_init:
            self._initialise_from_phrase(clip, ctx_init)
        self.encoder = ClassPromptEncoder(clip, classnames, self.global_context.length, template, learned_name,
                                          position)
        tree_fits = position == "end" or encoding != "tree"
        self.encoding = encoding if self.learnable and tree_fits else "truncated"
        self.tree = None
        if self.encoding == "tree":
            encoder = self.encoder
            self.tree = PromptTree(clip, self.global_context.counts, slots, encoder.prefix[0, 0],
                                   encoder.suffix[:, :encoder.length - 1 - encoder.n_ctx], encoder.eot_index,
                                   n_sets=1 if self.local_context is None else 2)
        self.to(clip.device)

    def _initialise_from_phrase(self, clip, phrase: str) -> None:
        vectors = phrase_vectors(clip, phrase)  # [k, W]
        n_ctx = self.global_context.length
        if vectors.shape[0] > n_ctx:
            raise ValueError(
                f"TRAINER.HIPROMPT.CTX_INIT={phrase!r}: {vectors.shape[0]} tokens, more than the context's "
                f"{n_ctx} (N_CTX_SHARED + N_CTX_COARSE + N_CTX_FINE + N_CTX_CLASS); CoOp's own setting is "
                f"N_CTX_SHARED {vectors.shape[0]} with the other counts 0")
        for context in (self.global_context, self.local_context):
            if context is not None:
                context.initialise_last(vectors)

    @property
    def learnable(self) -> bool:
        return self.global_context.length > 0

    def contexts(self) -> torch.Tensor:
        """[S, C, M, W]: the global set's context vectors, then the local set's if any."""
        sets = [self.global_context] + ([self.local_context] if self.local_context is not None else [])
        return torch.stack([context() for context in sets])

    def class_embeddings(self):
        """(global [C, D], local [C, D]); the local ones are the global ones without a local branch."""
        if self.encoding == "tree":
            embeddings = self.tree(self.contexts())  # [S, C, D]
        else:
            embeddings = self.encoder.encode_sets(self.contexts() if self.learnable else None)  # [S, C, D]
        return embeddings[0], embeddings[-1]
