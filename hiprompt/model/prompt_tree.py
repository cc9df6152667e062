"""Class prompts encoded as a prefix tree: each shared prefix once per layer (exact shortcut).

A class prompt is `[SOT] shared coarse fine class <name> . [EOT]`. The text transformer's
attention is causal, so the hidden states of a prefix depend on that prefix only: those of
the shared tokens are the same for every class of a prompt set (global or local), those of
the coarse-group tokens the same within a coarse group, those of the fine-group tokens
within a (coarse group, fine group) pair. The prompts form a prefix tree whose levels are
these segments (the first one with `[SOT]` in front); the leaves are the class-specific
tokens with the rest of the prompt. Each node is encoded once per layer, and the positions
of a node attend to its ancestors' cached keys and values plus its own causally.

Batched for few operators (a GPU step is bound by their number, not by FLOPs): all
positions of all levels are one [T, W] tensor, so the norms, projections and MLP of a block
run once over the whole tree; only the attention runs per level (a handful: independent of
the number of classes and groups). The leaves are padded to the longest one (causal: a
leaf's end-of-text never sees its padding) and the last block computes only their
end-of-text positions.

The attention is written from each residual block's own weights (open_clip's
`ResidualAttentionBlock`: `ln_1`, `attn` (nn.MultiheadAttention: in_proj, out_proj),
`ls_1`, `ln_2`, `mlp`, `ls_2`), so it computes what `block(x, attn_mask=causal)` computes
for the full prompts. tests/test_prompt_tree.py checks this against the library's forward.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _nodes(keys: torch.Tensor):
    """Unique rows of `keys` [R, K]: (node of each row [R], first row of each node [n])."""
    _, node_of_row = torch.unique(keys, dim=0, return_inverse=True)  # [R]
    rows = torch.arange(keys.shape[0])
    first = torch.full((int(node_of_row.max()) + 1,), keys.shape[0], dtype=torch.long)
    first = first.scatter_reduce(0, node_of_row, rows, reduce="amin")  # [n]
    return node_of_row, first


@dataclass(frozen=True)
class Level:
    """One level of the tree: `nodes` nodes of `length` positions each, stored at rows
    offset .. offset + nodes * length of the flat hidden states; `parent_level` the level its
    nodes continue (None for the first)."""
    nodes: int
    length: int
    offset: int
    parent_level: int


class LevelIndex(nn.Module):
    """A level's index tensors, as buffers so that they follow the tree's `.to()`."""

    def __init__(self, rows, parent, visible: torch.Tensor):
        super().__init__()
        self.register_buffer("rows", rows, persistent=False)  # [n] a row of each node (None: every row)
        self.register_buffer("parent", parent, persistent=False)  # [n] its parent node (None: first level)
        self.register_buffer("visible", visible, persistent=False)  # [len, seen + len] what a position sees


class PromptTree(nn.Module):
    """Encodes S prompt sets of C classes ([SOT] context[M] suffix) with shared prefixes once.

    counts: {kind: tokens} in prompt order (zero counts left out); slots: {kind: [C] slot per
    class}; the prompt of (set s, class c) shares its first segments with every (s, c')
    whose slots agree up to that segment. sot: [W] start-of-text embedding; suffix: [C, *, W]
    the tokens after the context, up to the longest end-of-text; eot_index: [C].
    """

    def __init__(self, clip, counts: dict, slots: dict, sot: torch.Tensor, suffix: torch.Tensor,
                 eot_index: torch.Tensor, n_sets: int):
        super().__init__()
        self._clip = [clip]  # referenced, not registered: the frozen CLIP is no part of the state
        # The tree's plan (index buffers) is made on the CPU and follows the module's `.to()`.
        num_classes = suffix.shape[0]
        self.context_length = sum(counts.values())  # M
        n_rows = n_sets * num_classes  # a row per (set, class)
        set_of_row = torch.arange(n_sets).repeat_interleave(num_classes)  # [R]
        class_of_row = torch.arange(num_classes).repeat(n_sets)  # [R]
        # internal levels: every kind but a last one that is per class (it joins the leaves)
        kinds = [kind for kind, count in counts.items() if count > 0]
        internal = kinds[:-1] if kinds and slots[kinds[-1]].unique().numel() == num_classes else kinds
        keys = set_of_row[:, None]  # [R, 1]
        self.levels, self.segments = [], []  # Level, and (context start, context length) of internal levels
        self.index = nn.ModuleList()  # LevelIndex of each level
        positions = []  # [length] absolute prompt position of each level's positions
        start, seen, node_of_row = 0, 0, None
        for kind in internal:
            keys = torch.cat([keys, slots[kind][class_of_row][:, None]], dim=1)  # [R, level + 2]
            new_node_of_row, first = _nodes(keys)
            level = len(self.levels)
            first_position = 1 + start if level else 0  # the first level carries [SOT]
            length = 1 + start + counts[kind] - first_position
            parent = node_of_row[first] if level else None
            self._add_level(first.numel(), length, seen, positions, first_position, first, parent)
            self.segments.append((start, counts[kind]))
            seen += length
            start += counts[kind]
            node_of_row = new_node_of_row
        self.leaf_start = start  # context position where the leaves begin
        first_position = 1 + start if self.levels else 0
        eot_in_leaf = eot_index.cpu()[class_of_row] - first_position  # [R]
        self.leaf_length = int(eot_in_leaf.max()) + 1  # padded to the longest leaf
        self._add_level(n_rows, self.leaf_length, seen, positions, first_position, None, node_of_row)
        leaf_offset = self.levels[-1].offset
        self.register_buffer("leaf_eot", eot_in_leaf, persistent=False)  # [R] end-of-text in each leaf
        self.register_buffer("leaf_index", torch.arange(n_rows), persistent=False)  # [R]
        # an end-of-text sees its ancestors and its leaf up to itself, not the padding after it
        visible = torch.arange(seen + self.leaf_length) <= seen + eot_in_leaf[:, None]  # [R, seen + L]
        self.register_buffer("leaf_eot_visible", visible[:, None, None], persistent=False)  # [R, 1, 1, seen + L]
        self.register_buffer("leaf_eot_row", leaf_offset + torch.arange(n_rows) * self.leaf_length + eot_in_leaf,
                             persistent=False)  # [R] its row in the flat hidden states
        self.register_buffer("positions", torch.cat(positions), persistent=False)  # [T]
        self.register_buffer("sot", sot.detach().clone(), persistent=False)  # [W]
        self.register_buffer("suffix", suffix.detach().clone(), persistent=False)  # [C, *, W]
        self.num_classes, self.n_sets = num_classes, n_sets

    def _add_level(self, nodes: int, length: int, seen: int, positions: list, first_position: int,
                   rows, parent) -> None:
        offset = sum(level.nodes * level.length for level in self.levels)
        index = len(self.levels)
        self.levels.append(Level(nodes, length, offset, index - 1 if index else None))
        # causal within the node, every ancestor position visible: [length, seen + length]
        visible = torch.ones(length, seen + length, dtype=torch.bool).tril(seen)
        self.index.append(LevelIndex(rows, parent, visible))
        positions.append((first_position + torch.arange(length)).repeat(nodes))

    @property
    def tokens_per_layer(self) -> int:
        """Positions the tree computes per layer (the plain forward computes S x C x 77)."""
        return sum(level.nodes * level.length for level in self.levels)

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        """contexts: [S, C, M, W] context vectors of each set. Returns end-of-text features [S, C, D]."""
        clip = self._clip[0]
        n_sets, num_classes, _, width = contexts.shape
        rows = contexts.reshape(n_sets * num_classes, self.context_length, width)  # [R, M, W]
        pieces = []  # each level's embeddings, flattened to [nodes * length, W]
        for index, (start, length) in enumerate(self.segments):
            own = rows[self.index[index].rows, start:start + length]  # [n, length, W]
            pieces.append(self._with_sot(own, index).reshape(-1, width))
        own = rows[:, self.leaf_start:]  # [R, M - leaf_start, W]
        tail = self.suffix.to(rows.dtype).repeat(n_sets, 1, 1)  # [R, *, W] name ... end-of-text, padding
        leaves = self._with_sot(torch.cat([own, tail], dim=1), len(self.segments))[:, :self.leaf_length]
        pieces.append(leaves.reshape(-1, width))
        hidden = torch.cat(pieces) + clip.model.positional_embedding.to(rows.dtype)[self.positions]  # [T, W]
        blocks = list(clip.text_blocks)
        for block in blocks[:-1]:
            hidden = self._block(block, hidden)
        eot = self._block(blocks[-1], hidden, last=True)  # [R, W]
        return clip.project_text(eot).reshape(n_sets, num_classes, -1)

    def _with_sot(self, embeddings: torch.Tensor, level: int) -> torch.Tensor:
        """[n, len, W] -> [n, 1 + len, W] with [SOT] in front on the first level."""
        if level:
            return embeddings
        sot = self.sot.to(embeddings.dtype).expand(embeddings.shape[0], 1, -1)
        return torch.cat([sot, embeddings], dim=1)

    def _block(self, block, hidden: torch.Tensor, last: bool = False) -> torch.Tensor:
        """One residual attention block over the flat tree [T, W], levels in parent order.

        last: only each leaf's end-of-text is computed, returned as [R, W]; the other
        positions give only their keys and values."""
        attn = block.attn
        heads = attn.num_heads
        width = hidden.shape[1]
        qkv = F.linear(block.ln_1(hidden), attn.in_proj_weight, attn.in_proj_bias)  # [T, 3W]
        keys_values, attended = [], []  # keys_values[k]: [2, n_k, heads, seen_k + len_k, head width]
        for level, level_index in zip(self.levels, self.index):
            part = qkv[level.offset:level.offset + level.nodes * level.length]
            part = part.view(level.nodes, level.length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            query, kv = part[0], part[1:]  # [n, heads, len, hw], [2, n, heads, len, hw]
            if level.parent_level is not None:
                ancestors = keys_values[level.parent_level][:, level_index.parent]
                kv = torch.cat([ancestors, kv], dim=3)  # [2, n, heads, seen + len, hw]
            keys_values.append(kv)
            if not last:
                out = F.scaled_dot_product_attention(query, kv[0], kv[1],
                                                     attn_mask=level_index.visible)  # [n, heads, len, hw]
                attended.append(out.transpose(1, 2).reshape(-1, width))
        if last:  # the leaves' end-of-text queries only
            query = query[self.leaf_index, :, self.leaf_eot][:, :, None]  # [R, heads, 1, hw]
            out = F.scaled_dot_product_attention(query, kv[0], kv[1], attn_mask=self.leaf_eot_visible)  # [R, heads, 1, hw]
            hidden, attended = hidden[self.leaf_eot_row], out.reshape(-1, width)  # [R, W]
        else:
            attended = torch.cat(attended)  # [T, W]
        hidden = hidden + block.ls_1(attn.out_proj(attended))
        return hidden + block.ls_2(block.mlp(block.ln_2(hidden)))
