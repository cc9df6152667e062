"""The step's shortcuts are exact: the prefix tree and the truncated joint call give the class
embeddings and gradients of the plain open_clip forward (each set at 77 positions)."""

import pytest
import torch
from conftest import plain_class_embeddings

from hiprompt.model.prompt_learner import HierarchicalPromptLearner

CLASSES = ["cat", "dog", "car", "bus", "traffic light", "hair drier"]
# "hair drier" is in no group at either level; "traffic light" only in a coarse group
GROUPS = {"coarse": [["cat", "dog"], ["car", "bus", "traffic light"]], "fine": [["car", "bus"], ["cat", "dog"]]}
COMPOSITIONS = {
    "paper 16/8/4/4": {"shared": 16, "coarse": 8, "fine": 4, "class": 4},
    "CoOp (all shared)": {"shared": 32, "coarse": 0, "fine": 0, "class": 0},
    "CSC (all class-specific)": {"shared": 0, "coarse": 0, "fine": 0, "class": 32},
    "groups only": {"shared": 0, "coarse": 3, "fine": 2, "class": 0},
    "one token of each kind": {"shared": 1, "coarse": 1, "fine": 1, "class": 1},
}


def embeddings_and_gradients(clip, counts, encoding, local_branch=True):
    """encoding "plain": each set's own 77-position forward (conftest.plain_class_embeddings)."""
    torch.manual_seed(0)  # the same context vectors for every encoding
    learner = HierarchicalPromptLearner(clip, CLASSES, GROUPS, counts, "a photo of a {}.", local_branch=local_branch,
                                        encoding="tree" if encoding == "plain" else encoding)
    embed = plain_class_embeddings if encoding == "plain" else HierarchicalPromptLearner.class_embeddings
    global_emb, local_emb = embed(learner)  # [C, D] each
    weights = torch.linspace(-1, 1, global_emb.numel(), device=global_emb.device).reshape(global_emb.shape)
    ((global_emb * weights).sum() + (local_emb * weights.flip(0)).square().sum()).backward()
    grads = {name: p.grad.clone() for name, p in learner.named_parameters()}
    return global_emb.detach(), local_emb.detach(), grads


@pytest.mark.parametrize("name", COMPOSITIONS)
@pytest.mark.parametrize("encoding", ["tree", "truncated"])
def test_shortcut_equals_the_plain_forward_with_gradients(tiny_clip, name, encoding):
    counts = COMPOSITIONS[name]
    plain = embeddings_and_gradients(tiny_clip, counts, "plain")
    fast = embeddings_and_gradients(tiny_clip, counts, encoding)
    torch.testing.assert_close(fast[0], plain[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(fast[1], plain[1], rtol=0, atol=1e-5)
    assert plain[2].keys() == fast[2].keys() and len(plain[2]) == 2 * sum(c > 0 for c in counts.values())
    for key, grad in plain[2].items():
        assert grad.abs().max() > 0, key
        # to 1e-5 of the largest gradient entry (they reach ~1e2 here, float32 sums)
        torch.testing.assert_close(fast[2][key], grad, rtol=0, atol=1e-5 * float(grad.abs().max()))


def test_tree_matches_in_float64_to_rounding(tiny_clip):
    """In float64 the tree and the library forward agree to 1e-10: same computation, other order."""
    import copy

    clip64 = copy.deepcopy(tiny_clip).double()
    counts = COMPOSITIONS["paper 16/8/4/4"]
    results = []
    for embed in (plain_class_embeddings, HierarchicalPromptLearner.class_embeddings):
        torch.manual_seed(0)
        learner = HierarchicalPromptLearner(clip64, CLASSES, GROUPS, counts, "{}").double()
        global_emb, local_emb = embed(learner)
        (global_emb.sum() + local_emb.square().sum()).backward()
        results.append((global_emb.detach(), local_emb.detach(), [p.grad for p in learner.parameters()]))
    (g_full, l_full, grads_full), (g_tree, l_tree, grads_tree) = results
    torch.testing.assert_close(g_tree, g_full, rtol=0, atol=1e-10)
    torch.testing.assert_close(l_tree, l_full, rtol=0, atol=1e-10)
    for tree_grad, full_grad in zip(grads_tree, grads_full):
        torch.testing.assert_close(tree_grad, full_grad, rtol=1e-10, atol=1e-10)


def test_tree_encodes_each_shared_prefix_once(tiny_clip):
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, COMPOSITIONS["paper 16/8/4/4"], "{}")
    longest = learner.encoder.length  # positions up to the longest end-of-text
    # a leaf: the class tokens, name, '.' and end-of-text, padded to the longest leaf
    leaf = longest - 1 - (16 + 8 + 4)
    assert int((learner.encoder.eot_index - 28).min()) < leaf  # the names differ in length
    # per set: [SOT] and shared 1 node x (1 + 16); coarse: 2 groups + "hair drier" = 3 nodes x 8;
    # fine under (coarse, fine): (cat,dog), (car,bus), traffic light, hair drier = 4 nodes x 4
    per_set = (1 + 16) + 3 * 8 + 4 * 4 + len(CLASSES) * leaf
    assert learner.tree.tokens_per_layer == 2 * per_set
    assert learner.tree.tokens_per_layer < 2 * len(CLASSES) * longest < 2 * len(CLASSES) * 77
    assert len(learner.tree.levels) == 4  # shared, coarse, fine, leaves: the attention calls of a block
    # the learned context is the learner's only state: the tree's plan is rebuilt, never saved
    assert {key.split(".")[0] for key in learner.state_dict()} == {"global_context", "local_context"}


def test_all_shared_context_is_encoded_once_per_set(tiny_clip):
    """CoOp's composition: the shared context (after [SOT]) is one node per set, so each class
    computes only its name, '.' and end-of-text (padded to the longest)."""
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, COMPOSITIONS["CoOp (all shared)"], "{}")
    leaf = learner.encoder.length - 1 - 32
    assert learner.tree.tokens_per_layer == 2 * ((1 + 32) + len(CLASSES) * leaf)
    assert len(learner.tree.levels) == 2
    # one token of each kind: still a level per kind ([SOT] + 1, 3 coarse nodes, 4 fine nodes)
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, COMPOSITIONS["one token of each kind"], "{}")
    leaf = learner.encoder.length - 1 - 3
    assert learner.tree.tokens_per_layer == 2 * ((1 + 1) + 3 * 1 + 4 * 1 + len(CLASSES) * leaf)


def test_tree_equals_the_plain_forward_on_a_trained_three_layer_tower():
    """The toy world's CLIP: trained weights (attention biases not zero) and 3 text blocks, so
    every block in between and the last are the right ones."""
    from hiprompt.clip import build_clip

    clip = build_clip("toy", "packaged")
    assert len(list(clip.text_blocks)) == 3 and clip.text_blocks[0].attn.in_proj_bias.abs().max() > 0
    counts = COMPOSITIONS["paper 16/8/4/4"]
    plain = embeddings_and_gradients(clip, counts, "plain")
    tree = embeddings_and_gradients(clip, counts, "tree")
    torch.testing.assert_close(tree[0], plain[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(tree[1], plain[1], rtol=0, atol=1e-5)
    for key, grad in plain[2].items():
        torch.testing.assert_close(tree[2][key], grad, rtol=0, atol=1e-5 * float(grad.abs().max()))


def test_single_set_and_hand_crafted_prompts(tiny_clip):
    counts = COMPOSITIONS["paper 16/8/4/4"]
    plain = embeddings_and_gradients(tiny_clip, counts, "plain", local_branch=False)
    tree = embeddings_and_gradients(tiny_clip, counts, "tree", local_branch=False)
    torch.testing.assert_close(tree[0], plain[0], rtol=0, atol=1e-5)
    assert torch.equal(tree[0], tree[1])  # without a local branch the local embeddings are the global ones
    hand = HierarchicalPromptLearner(tiny_clip, ["cat", "dog"], {}, {k: 0 for k in counts}, "a photo of a {}.")
    expected = tiny_clip.encode_text(tiny_clip.tokenize(["a photo of a cat.", "a photo of a dog."]))[0]
    torch.testing.assert_close(hand.class_embeddings()[0], expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="PROMPT_ENCODING='fast'"):
        HierarchicalPromptLearner(tiny_clip, ["cat"], {}, counts, "{}", encoding="fast")


def test_truncated_text_encoding_equals_the_full_one(tiny_clip):
    tokens = tiny_clip.tokenize(["a dog.", "a red car parked next to a bus in the rain."])  # [2, 77]
    eot, per_token, mask = tiny_clip.encode_text(tokens)
    eot_short, per_token_short, mask_short = tiny_clip.encode_text(tokens, truncate=True)
    length = int(tokens.argmax(dim=-1).max()) + 1
    assert per_token_short.shape[1] == length == mask_short.shape[1]
    torch.testing.assert_close(eot_short, eot, rtol=0, atol=1e-5)
    torch.testing.assert_close(per_token_short, per_token[:, :length], rtol=0, atol=1e-5)
    assert torch.equal(mask_short, mask[:, :length]) and not mask[:, length:].any()


@pytest.mark.cuda
@pytest.mark.parametrize("name", COMPOSITIONS)
def test_tree_equals_the_plain_forward_on_the_gpu(tiny_clip, name):
    """On CUDA in float32 (TF32 off), the tree against the library's forward, as on the CPU."""
    import copy

    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        clip = copy.deepcopy(tiny_clip).cuda()
        plain = embeddings_and_gradients(clip, COMPOSITIONS[name], "plain")
        tree = embeddings_and_gradients(clip, COMPOSITIONS[name], "tree")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    assert tree[0].device == clip.device  # computed on the GPU
    torch.testing.assert_close(tree[0], plain[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(tree[1], plain[1], rtol=0, atol=1e-5)
    for key, grad in plain[2].items():
        torch.testing.assert_close(tree[2][key], grad, rtol=0, atol=1e-5 * float(grad.abs().max()))


@pytest.mark.cuda
def test_bf16_autocast_tree_on_cuda_keeps_fp32_master_weights(tiny_clip):
    import copy

    clip = copy.deepcopy(tiny_clip).cuda()
    counts = COMPOSITIONS["paper 16/8/4/4"]
    torch.manual_seed(0)
    learner = HierarchicalPromptLearner(clip, CLASSES, GROUPS, counts, "{}").cuda()
    reference = [e.detach() for e in learner.class_embeddings()]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        plain_bf16 = [e.detach().float() for e in plain_class_embeddings(learner)]
        global_emb, local_emb = learner.class_embeddings()
    (global_emb.float().sum() + local_emb.float().sum()).backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in learner.parameters())
    torch.testing.assert_close(global_emb.float(), reference[0], rtol=0.05, atol=0.05)
    torch.testing.assert_close(local_emb.float(), reference[1], rtol=0.05, atol=0.05)
    # the tree in bf16 is as close to the library's forward in bf16 as bf16 rounding allows
    torch.testing.assert_close(global_emb.float(), plain_bf16[0], rtol=0.05, atol=0.05)
    torch.testing.assert_close(local_emb.float(), plain_bf16[1], rtol=0.05, atol=0.05)


def test_each_encoding_computes_through_its_own_path(tiny_clip, monkeypatch):
    """`tree` runs the prefix tree once and never the truncated joint call; `truncated` has no
    tree and runs the joint call once (both give the same values, so only the calls tell)."""
    counts = COMPOSITIONS["paper 16/8/4/4"]
    for encoding in ("tree", "truncated"):
        learner = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, counts, "{}", encoding=encoding)
        calls = []
        monkeypatch.setattr(learner.encoder, "encode_sets", lambda *a, f=learner.encoder.encode_sets: calls.append(
            "truncated") or f(*a))
        if encoding == "tree":
            monkeypatch.setattr(learner.tree, "forward", lambda *a, f=learner.tree.forward: calls.append("tree") or f(*a))
        else:
            assert learner.tree is None
        learner.class_embeddings()
        assert calls == [encoding]


def test_hand_crafted_prompts_are_encoded_as_one_set(tiny_clip):
    hand = HierarchicalPromptLearner(tiny_clip, ["cat", "dog"], {}, {k: 0 for k in COMPOSITIONS["paper 16/8/4/4"]},
                                     "a photo of a {}.")
    assert hand.encoding == "truncated" and hand.tree is None
    expected = tiny_clip.encode_text(tiny_clip.tokenize(["a photo of a cat.", "a photo of a dog."]))[0]
    sets = hand.encoder.encode_sets()  # [S, C, D] with S = 1, not a repeated set
    assert sets.shape == (1, 2, expected.shape[1])
    torch.testing.assert_close(sets[0], expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("std", [None, 0.5])
def test_context_vectors_start_normal_with_the_given_std(tiny_clip, std):
    """CoOp's initialisation: N(0, std^2), std 0.02 unless given."""
    kwargs = {} if std is None else {"std": std}
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, {"shared": 16, "coarse": 8, "fine": 4, "class": 4},
                                        "{}", **kwargs)
    values = torch.cat([p.detach().flatten() for p in learner.parameters()])  # ~ 2 x 5,000 values
    want = 0.02 if std is None else std
    assert abs(float(values.std()) - want) < 0.05 * want and abs(float(values.mean())) < 0.05 * want


@pytest.mark.parametrize("position", ["end", "middle"])
def test_learner_and_encoder_follow_the_clip_to_its_device(position):
    """On an emulated CUDA device (tests/emulated_cuda.py: a CPU tensor meeting one on the
    device raises) the learner's vectors and the encoder's index buffers (the name's order)
    are on the CLIP's device, and the embeddings are the CPU's."""
    from emulated_cuda import emulated_cuda

    from hiprompt.clip import build_clip
    from hiprompt.model.prompt_learner import ClassPromptEncoder

    clip = build_clip("tiny", "random", seed=0)
    counts = {"shared": 2, "coarse": 1, "fine": 1, "class": 1}
    torch.manual_seed(0)
    expected = HierarchicalPromptLearner(clip, CLASSES, GROUPS, counts, "{}", position=position).class_embeddings()
    context = torch.linspace(-1, 1, len(CLASSES) * 3 * clip.token_width).reshape(len(CLASSES), 3, -1)
    expected_alone = ClassPromptEncoder(clip, CLASSES, 3, "{}", position=position)(context)
    with emulated_cuda():
        clip.to("cuda")
        torch.manual_seed(0)
        got = [e.cpu() for e in HierarchicalPromptLearner(clip, CLASSES, GROUPS, counts, "{}",
                                                          position=position).class_embeddings()]
        alone = ClassPromptEncoder(clip, CLASSES, 3, "{}", position=position)(context.to("cuda")).cpu()
    for want, have in zip(expected, got):
        torch.testing.assert_close(have, want.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(alone, expected_alone, rtol=0, atol=1e-5)


def test_a_single_class(tiny_clip):
    """One class (the start-of-text is read from the first, and only, prompt)."""
    counts = COMPOSITIONS["paper 16/8/4/4"]
    torch.manual_seed(0)
    learner = HierarchicalPromptLearner(tiny_clip, ["traffic light"], {}, counts, "{}")
    assert learner.encoding == "tree"
    for got, want in zip(learner.class_embeddings(), plain_class_embeddings(learner)):
        assert got.shape == (1, want.shape[1])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
