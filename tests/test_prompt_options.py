"""CoOp's prompt options in the one prompt learner: the class name's position among the
context tokens (CLASS_TOKEN_POSITION) and the context's start from a phrase (CTX_INIT).

The reference prompts are put together here by hand, token by token, from CLIP's tokenizer
and token embedding, and encoded by open_clip's own `CLIP.encode_text`."""

import json

import numpy as np
import pytest
import torch
from conftest import coco_mini_root, plain_class_embeddings, write_knowledge_folder
from sklearn.metrics import average_precision_score

import train
from hiprompt.classnames import builtin_class_set, label_phrase, prompt_name
from hiprompt.config import ConfigError, get_cfg_default, validate_cfg
from hiprompt.model.method import PromptedCLIP
from hiprompt.model.prompt_learner import LEARNED_NAMES, HierarchicalPromptLearner
from hiprompt.training.checkpoint import load_checkpoint

# "mouse" reads "computer mouse" in prompts (two tokens), "traffic light" is two tokens too;
# "hair drier" is in no group, "traffic light" only in a coarse one
CLASSES = ["cat", "mouse", "traffic light", "bus", "hair drier"]
GROUPS = {"coarse": [["cat", "mouse"], ["traffic light", "bus"]], "fine": [["cat", "mouse"]]}
COUNTS = {"shared": 3, "coarse": 2, "fine": 1, "class": 2}  # M = 8
NAMES = {"label": label_phrase, "prompt": prompt_name}


def token_ids(clip, text: str) -> list:
    """The ids of `text`'s tokens, without start- and end-of-text."""
    ids = clip.tokenize([text])[0]
    return ids[1:int(ids.argmax())].tolist()


def reference_embeddings(clip, contexts: torch.Tensor, names, position: str) -> torch.Tensor:
    """[C, D]: open_clip's `encode_text` on prompts assembled by hand:
    end `[SOT] ctx name . [EOT]`, middle `[SOT] ctx[:M//2] name ctx[M//2:] . [EOT]`,
    front `[SOT] name ctx . [EOT]`; contexts [C, M, W]."""
    sot, eot = clip.tokenize([""])[0, :2].tolist()
    dot = token_ids(clip, ".")
    n_ctx = contexts.shape[1]
    half = n_ctx // 2
    rows, context_positions = [], []
    for name in names:
        ctx = [None] * n_ctx  # None marks a context position
        name_ids = token_ids(clip, name)
        middle = {"end": ctx + name_ids, "middle": ctx[:half] + name_ids + ctx[half:],
                  "front": name_ids + ctx}[position]
        sequence = [sot] + middle + dot + [eot]
        context_positions.append([i for i, t in enumerate(sequence) if t is None])
        rows.append([0 if t is None else t for t in sequence] + [0] * (clip.context_length - len(sequence)))
    ids = torch.tensor(rows)  # [C, 77]; the end-of-text has the largest id (open_clip's pooling)
    model = clip.model
    embedded = model.token_embedding(ids).clone()  # [C, 77, W]
    for c, positions in enumerate(context_positions):
        embedded[c, positions] = contexts[c]
    hook = model.token_embedding.register_forward_hook(lambda module, inputs, output: embedded)
    try:
        return model.encode_text(ids)  # [C, D]
    finally:
        hook.remove()


def gradients(learner, embeddings) -> dict:
    weights = torch.linspace(-1, 1, embeddings[0].numel()).reshape(embeddings[0].shape)
    learner.zero_grad()
    ((embeddings[0] * weights).sum() + (embeddings[1] * weights.flip(0)).square().sum()).backward()
    return {name: p.grad.clone() for name, p in learner.named_parameters()}


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("encoding, learned_name", [("tree", "label"), ("truncated", "prompt"), ("plain", "label")])
def test_class_embeddings_equal_open_clip_on_hand_assembled_prompts(tiny_clip, position, encoding, learned_name):
    """encoding "plain": each set's own 77-position forward (conftest.plain_class_embeddings)."""
    built = "tree" if encoding == "plain" else encoding
    torch.manual_seed(0)
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, COUNTS, "a photo of a {}.",
                                        learned_name=learned_name, encoding=built, position=position)
    assert learner.encoding == (built if position == "end" else "truncated")
    names = [NAMES[learned_name](c) for c in CLASSES]
    contexts = learner.contexts()  # [2, C, M, W]
    embeddings = plain_class_embeddings(learner) if encoding == "plain" else learner.class_embeddings()
    expected = [reference_embeddings(tiny_clip, contexts[s], names, position) for s in range(2)]
    for got, want in zip(embeddings, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # the same gradients with respect to every learned vector as through the hand-built prompts
    learned = gradients(learner, embeddings)
    torch.manual_seed(0)
    twin = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, COUNTS, "a photo of a {}.",
                                     learned_name=learned_name, encoding=built, position=position)
    twin_contexts = twin.contexts()
    reference = gradients(twin, [reference_embeddings(tiny_clip, twin_contexts[s], names, position) for s in range(2)])
    assert learned.keys() == reference.keys() and len(learned) == 8
    for key, grad in reference.items():
        assert grad.abs().max() > 0, key
        torch.testing.assert_close(learned[key], grad, rtol=0, atol=1e-5 * float(grad.abs().max()))


def test_middle_splits_an_odd_context_as_coop(tiny_clip):
    """CoOp's split: n_ctx // 2 tokens before the name (2 of 5), the other 3 after."""
    counts = {"shared": 5, "coarse": 0, "fine": 0, "class": 0}
    torch.manual_seed(0)
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, {}, counts, "{}", local_branch=False, position="middle")
    expected = reference_embeddings(tiny_clip, learner.contexts()[0], CLASSES, "middle")
    torch.testing.assert_close(learner.class_embeddings()[0], expected, rtol=0, atol=1e-5)
    order = learner.encoder.order[0, :10].tolist()  # "cat" is one token: SOT c0 c1 cat c2 c3 c4 . EOT
    assert order == [0, 1, 2, 6, 3, 4, 5, 7, 8, 9]


def test_ctx_init_sets_the_last_context_positions_of_every_slot(tiny_clip):
    phrase = "a photo of a"
    torch.manual_seed(0)
    plain = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, COUNTS, "{}")
    torch.manual_seed(0)
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, COUNTS, "{}", ctx_init=phrase.replace(" ", "_"))
    ids = tiny_clip.tokenize([phrase])[0, 1:5]  # a, photo, of, a
    assert ids[0] == ids[3] and ids[0] != ids[1]
    words = tiny_clip.model.token_embedding.weight[ids]  # [4, W]
    # context positions 0-2 shared, 3-4 coarse, 5 fine, 6-7 class: the phrase takes 4-7
    for branch in ("global_context", "local_context"):
        vectors = getattr(learner, branch).vectors
        before = getattr(plain, branch).vectors
        assert torch.equal(vectors["shared"], before["shared"])  # positions before the phrase: random
        assert torch.equal(vectors["coarse"][:, 0], before["coarse"][:, 0])
        n_coarse, n_fine, n_class = (vectors[k].shape[0] for k in ("coarse", "fine", "class"))
        assert (n_coarse, n_fine, n_class) == (3, 4, 5)
        assert torch.equal(vectors["coarse"][:, 1], words[0].expand(n_coarse, -1))
        assert torch.equal(vectors["fine"][:, 0], words[1].expand(n_fine, -1))
        assert torch.equal(vectors["class"], words[2:].expand(n_class, -1, -1))
    context = learner.contexts()  # [2, C, 8, W]
    assert torch.equal(context[:, :, 4:], words.expand(2, len(CLASSES), -1, -1))


@pytest.mark.parametrize("counts, groups", [
    ({"shared": 4, "coarse": 0, "fine": 0, "class": 0}, {}),  # CoOp's own: the context is the phrase
    ({"shared": 0, "coarse": 0, "fine": 0, "class": 4}, {}),  # CSC
    ({"shared": 1, "coarse": 1, "fine": 1, "class": 1}, GROUPS),  # every kind holds one word
])
@pytest.mark.parametrize("encoding", ["tree", "truncated", "plain"])
def test_the_phrase_as_whole_context_gives_the_hand_crafted_prompt(tiny_clip, counts, groups, encoding):
    """M = 4 tokens started from "a photo of a" before the readable name are the prompt
    "a photo of a {name}." itself, encoded as zero-shot CLIP encodes it."""
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, groups, counts, "a photo of a {}.", learned_name="prompt",
                                        encoding="tree" if encoding == "plain" else encoding, ctx_init="a photo of a")
    prompts = [f"a photo of a {prompt_name(c)}." for c in CLASSES]
    expected = tiny_clip.model.encode_text(tiny_clip.tokenize(prompts))  # [C, D]
    global_emb, local_emb = plain_class_embeddings(learner) if encoding == "plain" else learner.class_embeddings()
    torch.testing.assert_close(global_emb, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(local_emb, expected, rtol=0, atol=1e-5)


def test_bad_phrase_and_position_are_named(tiny_clip):
    counts = {"shared": 2, "coarse": 0, "fine": 0, "class": 1}
    with pytest.raises(ValueError, match=r"TRAINER\.HIPROMPT\.CTX_INIT='a photo of a': 4 tokens, more than the "
                                         r"context's 3 \(N_CTX_SHARED \+ N_CTX_COARSE .*N_CTX_SHARED 4"):
        HierarchicalPromptLearner(tiny_clip, CLASSES, {}, counts, "{}", ctx_init="a photo of a")
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION='middel': expected one of end, middle, front"):
        HierarchicalPromptLearner(tiny_clip, CLASSES, {}, counts, "{}", position="middel")
    cfg = get_cfg_default()
    cfg.TRAINER.HIPROMPT.CLASS_TOKEN_POSITION = "last"
    cfg.TRAINER.HIPROMPT.CTX_INIT = 4
    with pytest.raises(ConfigError, match=r"TRAINER.HIPROMPT.CTX_INIT=4: expected a phrase.*TRAINER.HIPROMPT."
                                          r"CLASS_TOKEN_POSITION='last': expected one of end, middle, front"):
        validate_cfg(cfg)


def test_method_losses_with_phrase_and_middle_name(tiny_clip):
    """The full method (local branch, order loss) on prompts with the name in the middle."""
    hp = get_cfg_default().TRAINER.HIPROMPT
    hp.N_CTX_SHARED, hp.N_CTX_COARSE, hp.N_CTX_FINE, hp.N_CTX_CLASS = 2, 1, 1, 2
    hp.CTX_INIT, hp.CLASS_TOKEN_POSITION = "a photo", "middle"
    torch.manual_seed(0)
    model = PromptedCLIP(tiny_clip, CLASSES, GROUPS, hp)
    sentences = ["a cat chases a computer mouse.", "a bus stops at a traffic light.", "a hair drier."]
    eot, tokens, mask = tiny_clip.encode_text(tiny_clip.tokenize(sentences), truncate=True)
    labels = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]], dtype=torch.float32)
    loss, parts = model.text_loss(eot, tokens, mask, labels)
    assert set(parts) == {"rank_global", "rank_local", "order", "loss"} and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.prompts.parameters())


def test_coop_trainer_with_phrase_and_middle_name(tiny_clip, tmp_path):
    """CoOp end to end (tiny backbone, coco-mini val2017, one epoch) with CTX_INIT and the
    name in the middle. The learning rate is near zero so that the saved context is still
    the start: the phrase in the last 4 of CoOp's 16 positions, random before it."""
    root = coco_mini_root()
    classes = builtin_class_set("coco")
    pairs = zip(classes, classes[1:] + classes[:1])
    sentences = [(f"a photo of a {a} and a {b}.", [a, b], "caption") for a, b in pairs]
    knowledge = write_knowledge_folder(tmp_path / "knowledge", classes, {"coarse": [], "fine": []}, sentences)
    out = tmp_path / "coop"
    train.main(["--root", str(root), "--dataset-config-file", "configs/datasets/coco2017.yaml",
                "--trainer", "CoOp", "--config-file", "configs/trainers/CoOp/tiny.yaml", "--seed", "1",
                "--output-dir", str(out), "DATASET.TEXT.DIR", str(knowledge),
                "OPTIM.MAX_EPOCH", "1", "OPTIM.LR", "1e-9",
                "TRAINER.HIPROMPT.CTX_INIT", "a photo of a", "TRAINER.HIPROMPT.CLASS_TOKEN_POSITION", "middle",
                "TEST.SAVE_SCORES", "True"])
    written = json.loads((out / "results_test.json").read_text())
    assert written["num_images"] == 128
    # the reported mAP is sklearn's AP of the scores it saved, over the classes with a positive
    saved = np.load(out / "scores_test.npz")
    labels, scores = saved["labels"], saved["scores"].astype(np.float64)
    assert scores.shape == (128, 80) and not saved["ignore"].any()
    aps = [average_precision_score(labels[:, c], scores[:, c]) for c in range(80) if labels[:, c].any()]
    assert written["metrics"]["mAP"] == pytest.approx(100 * np.mean(aps), abs=1e-3)
    checkpoint = load_checkpoint(out, "prompt_learner")
    settings = checkpoint["run"]["settings"]
    assert settings["TRAINER.HIPROMPT.CTX_INIT"] == "a photo of a"
    assert settings["TRAINER.HIPROMPT.CLASS_TOKEN_POSITION"] == "middle"
    vectors = checkpoint["state_dict"]["global_context.vectors.shared"][0]  # [16, W] after one epoch
    words = tiny_clip.model.token_embedding.weight[tiny_clip.tokenize(["a photo of a"])[0, 1:5]]  # [4, W]
    torch.testing.assert_close(vectors[12:], words, rtol=0, atol=1e-6)
    assert (vectors[:12, None] - words[None]).abs().amax(dim=-1).min() > 1e-3  # none of the random ones


def test_taidpt_names_follow_its_coco_list(tiny_clip):
    """LEARNED_NAME taidpt: the name TaI-DPT writes after its context (guozix/TaI-DPT 1333eca,
    datasets/data_helpers.py: coco_object_categories = the first name of each synonym list)."""
    classes = ["motorcycle", "airplane", "cat", "hair drier"]
    written = ["motor bike", "aeroplane", "cat", "hair drier"]  # its list, by hand
    counts = {"shared": 3, "coarse": 0, "fine": 0, "class": 0}
    torch.manual_seed(0)
    learner = HierarchicalPromptLearner(tiny_clip, classes, {"coarse": [], "fine": []}, counts, "a photo of a {}.",
                                        learned_name="taidpt")
    contexts = learner.contexts()
    for got, s in zip(learner.class_embeddings(), range(2)):
        torch.testing.assert_close(got, reference_embeddings(tiny_clip, contexts[s], written, "end"), rtol=0, atol=1e-5)
    cfg = get_cfg_default()
    cfg.TRAINER.HIPROMPT.LEARNED_NAME = "taidpt"
    validate_cfg(cfg)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_a_single_context_token(tiny_clip, position):
    """M = 1: one learned token, not the hand-crafted prompt, at each position."""
    counts = {"shared": 1, "coarse": 0, "fine": 0, "class": 0}
    torch.manual_seed(0)
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, {}, counts, "a photo of a {}.", local_branch=False,
                                        position=position)
    expected = reference_embeddings(tiny_clip, learner.contexts()[0], CLASSES, position)
    torch.testing.assert_close(learner.class_embeddings()[0], expected, rtol=0, atol=1e-5)


def test_the_name_order_is_no_part_of_the_state(tiny_clip):
    """The order of a `middle` prompt is rebuilt from the class names, never saved: the state
    is the context vectors and their slots only."""
    learner = HierarchicalPromptLearner(tiny_clip, CLASSES, GROUPS, COUNTS, "{}", position="middle")
    assert learner.encoder.order is not None
    assert {key.split(".")[0] for key in learner.state_dict()} == {"global_context", "local_context"}


def test_bad_learned_name_counts_and_class_names_are_named(tiny_clip):
    with pytest.raises(ValueError) as error:
        HierarchicalPromptLearner(tiny_clip, CLASSES, {}, COUNTS, "{}", learned_name="name")
    assert str(error.value) == f"TRAINER.HIPROMPT.LEARNED_NAME='name': expected one of {', '.join(LEARNED_NAMES)}"
    kinds = "('shared', 'coarse', 'fine', 'class')"
    for counts in ({**COUNTS, "fine": -1}, {**COUNTS, "extra": 2}):
        with pytest.raises(ValueError) as error:
            HierarchicalPromptLearner(tiny_clip, CLASSES, {}, counts, "{}")
        assert str(error.value) == f"context counts {counts}: expected non-negative counts of {kinds}"
    # a name without tokens cannot be moved within the prompt
    with pytest.raises(ValueError) as error:
        HierarchicalPromptLearner(tiny_clip, ["cat", ""], {}, COUNTS, "{}", position="middle")
    assert str(error.value) == ("class name '': its tokens alone differ from its tokens in the prompt; "
                                "TRAINER.HIPROMPT.CLASS_TOKEN_POSITION end does not need them")
