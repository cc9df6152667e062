"""Class prompts encoded as a prefix tree: each shared prefix once per layer (exact shortcut).

A class prompt is `[SOT] shared coarse fine class <name> . [EOT]`. The text transformer's
attention is causal, so the hidden states of a prefix depend on that prefix only: those of
`[SOT]` are the same for every prompt, those of the shared tokens the same for every class
of a prompt set (global or local), those of the coarse-group tokens the same within a coarse
group, those of the fine-group tokens within a (coarse group, fine group) pair. The prompts
form a prefix tree whose levels are these segments; the leaves are the class-specific
tokens with the rest of the prompt. Each node is encoded once per layer, and the positions
of a node attend to its ancestors' cached keys and values plus its own causally.

The attention is written from each residual block's own weights (open_clip's
`ResidualAttentionBlock`: `ln_1`, `attn` (nn.MultiheadAttention: in_proj, out_proj),
`ls_1`, `ln_2`, `mlp`, `ls_2`), so it computes what `block(x, attn_mask=causal)` computes
for the full prompts. tests/test_prompt_tree.py checks this against the library's forward.
"""

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


class PromptTree(nn.Module):
    """Encodes S prompt sets of C classes ([SOT] context[M] suffix) with shared prefixes once.

    counts: {kind: tokens} in prompt order (zero counts left out); slots: {kind: [C] slot per
    class}; the prompt of (set s, class c) shares its first segments with every (s, c')
    whose slots agree up to that segment. sot: [W] start-of-text embedding; suffix: [C, *, W]
    the tokens after the context, at least up to each end-of-text; eot_index: [C].
    The leaves (class-specific tokens, name, end-of-text) end at their own end-of-text,
    grouped by length, and the last layer computes only what the end-of-text needs.
    """

    def __init__(self, clip, counts: dict, slots: dict, sot: torch.Tensor, suffix: torch.Tensor,
                 eot_index: torch.Tensor, n_sets: int):
        super().__init__()
        self._clip = [clip]  # referenced, not registered: the frozen CLIP is no part of the state
        # The tree's plan (index buffers) is made on the CPU and follows the module's `.to()`.
        num_classes = suffix.shape[0]
        self.context_length = sum(counts.values())  # M
        set_of_row = torch.arange(n_sets).repeat_interleave(num_classes)  # [R] a row per (set, class)
        class_of_row = torch.arange(num_classes).repeat(n_sets)  # [R]
        # internal levels: every kind but a last one that is per class (it joins the leaves)
        kinds = [kind for kind, count in counts.items() if count > 0]
        internal = kinds[:-1] if kinds and slots[kinds[-1]].unique().numel() == num_classes else kinds
        keys = set_of_row[:, None]  # [R, 1]
        self.segments = []  # (start in the context, length) of each internal level
        start, node_of_row = 0, torch.zeros(len(set_of_row), dtype=torch.long)  # root: one node
        for level, kind in enumerate(internal):
            keys = torch.cat([keys, slots[kind][class_of_row][:, None]], dim=1)  # [R, level + 2]
            new_node_of_row, first = _nodes(keys)
            self.register_buffer(f"rows_{level}", first, persistent=False)  # [n] a row of each node
            self.register_buffer(f"parent_{level}", node_of_row[first], persistent=False)  # [n] node one level up
            self.segments.append((start, counts[kind]))
            start += counts[kind]
            node_of_row = new_node_of_row
        self.leaf_start = start  # context position where the leaves begin
        leaf_length = eot_index.cpu()[class_of_row] - start  # [R] class tokens, name, '.', end-of-text
        self.leaf_lengths = leaf_length.unique().tolist()
        for bucket, length in enumerate(self.leaf_lengths):
            rows = (leaf_length == length).nonzero()[:, 0]
            self.register_buffer(f"leaf_rows_{bucket}", rows, persistent=False)  # [n_b]
            self.register_buffer(f"leaf_parent_{bucket}", node_of_row[rows], persistent=False)  # [n_b]
        order = torch.cat([getattr(self, f"leaf_rows_{b}") for b in range(len(self.leaf_lengths))])
        self.register_buffer("leaf_order", order.argsort(), persistent=False)  # [R] bucket order -> rows
        self.register_buffer("sot", sot.detach().clone(), persistent=False)  # [W]
        self.register_buffer("suffix", suffix.detach().clone(), persistent=False)  # [C, *, W]
        self.num_classes, self.n_sets = num_classes, n_sets

    @property
    def tokens_per_layer(self) -> int:
        """Positions the tree computes per layer (the plain forward computes S x C x 77)."""
        internal = sum(getattr(self, f"rows_{k}").numel() * length for k, (_, length) in enumerate(self.segments))
        leaves = sum(getattr(self, f"leaf_rows_{b}").numel() * n for b, n in enumerate(self.leaf_lengths))
        return 1 + internal + leaves

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        """contexts: [S, C, M, W] context vectors of each set. Returns end-of-text features [S, C, D]."""
        clip = self._clip[0]
        n_sets, num_classes, _, width = contexts.shape
        rows = contexts.reshape(n_sets * num_classes, self.context_length, width)  # [R, M, W]
        position = clip.model.positional_embedding.to(rows.dtype)  # [77, W]
        # levels: (embeddings [n, len, W], first position, level attended to, its node per node)
        levels = [(self.sot.to(rows.dtype)[None, None], 0, None, None)]
        for level, (start, length) in enumerate(self.segments):
            node_rows = getattr(self, f"rows_{level}")
            levels.append((rows[node_rows, start:start + length], 1 + start, level, getattr(self, f"parent_{level}")))
        last_internal = len(levels) - 1
        suffix = self.suffix.to(rows.dtype)
        for bucket, length in enumerate(self.leaf_lengths):
            leaf_rows = getattr(self, f"leaf_rows_{bucket}")
            own = rows[leaf_rows, self.leaf_start:]  # [n_b, M - leaf_start, W]
            tail = suffix[leaf_rows % num_classes, :length - own.shape[1]]  # name ... end-of-text
            levels.append((torch.cat([own, tail], dim=1), 1 + self.leaf_start, last_internal,
                           getattr(self, f"leaf_parent_{bucket}")))

        hidden = [emb + position[start:start + emb.shape[1]] for emb, start, _, _ in levels]
        links = [(parent_level, parent) for _, _, parent_level, parent in levels]
        blocks = list(clip.text_blocks)
        for block in blocks[:-1]:
            hidden = _tree_block(block, hidden, links)
        eot = _tree_block(blocks[-1], hidden, links, first_leaf=last_internal + 1)  # [R in bucket order, W]
        return clip.project_text(eot[self.leaf_order]).reshape(n_sets, num_classes, -1)


def _tree_block(block, hidden: list, links: list, first_leaf: int = None):
    """One residual attention block over the levels of the tree, parents before children.

    hidden[k]: [n_k, len_k, W] the positions of level k's nodes; links[k]: (the level its
    nodes continue, [n_k] their node there), (None, None) for the root. A node's queries see
    all of its ancestors' positions and its own causally. first_leaf given (the last block):
    only the last position of each leaf (its end-of-text) is computed, returned as
    [leaves, W] in level order; the other levels give only their keys and values."""
    attn = block.attn
    heads = attn.num_heads
    out, contexts = [], []  # contexts[k]: keys, values [n_k, heads, ancestors + len_k, head width]
    for index, (x, (parent_level, parent)) in enumerate(zip(hidden, links)):
        nodes, length, width = x.shape
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # [n, len, 3W]
        q, k, v = (t.reshape(nodes, length, heads, width // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        if parent is not None:
            k = torch.cat([contexts[parent_level][0][parent], k], dim=2)  # [n, heads, ancestors + len, hw]
            v = torch.cat([contexts[parent_level][1][parent], v], dim=2)
        contexts.append((k, v))
        if first_leaf is not None:
            if index < first_leaf:
                continue  # keys and values are all the last block needs of an inner node
            q, x = q[:, :, -1:], x[:, -1:]  # the end-of-text sees every position: no mask
            visible = None
        else:
            seen = k.shape[2] - length
            visible = torch.ones(length, seen + length, dtype=torch.bool, device=x.device).tril(seen)  # [len, all]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)  # [n, heads, len, hw]
        attended = attn.out_proj(attended.transpose(1, 2).reshape(nodes, -1, width))
        x = x + block.ls_1(attended)
        out.append(x + block.ls_2(block.mlp(block.ln_2(x))))
    if first_leaf is not None:
        return torch.cat([x[:, -1] for x in out])  # [leaves, W]
    return out
