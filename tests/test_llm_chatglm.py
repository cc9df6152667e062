"""The chatglm-cpp back-end against the real chatglm-cpp library.

No ChatGLM weights exist here, so the test writes a tiny random-weight ChatGLM3 model with
chatglm-cpp's own converter (`chatglm_cpp.convert.ChatGLM3Converter`) from a state dict and
a sentencepiece tokenizer trained in the test. Its gibberish answers exercise the parser's
worst case: the run must finish, count what it could not use, and cache every answer.
"""

import io
import json
from types import SimpleNamespace

import pytest

pytest.importorskip("chatglm_cpp", reason="chatglm-cpp is not installed (extra 'llm')")
spm = pytest.importorskip("sentencepiece", reason="sentencepiece is not installed")
pytest.importorskip("transformers", reason="chatglm_cpp.convert imports transformers")

import torch  # noqa: E402
from chatglm_cpp.convert import ChatGLM3Converter, GGMLType  # noqa: E402

from llm_knowledge.backends import BackendOptions, create_backend  # noqa: E402
from llm_knowledge.counts import build_counts  # noqa: E402
from llm_knowledge.pipeline import RunConfig, run  # noqa: E402
from llm_knowledge.questions import class_attributes  # noqa: E402

# ChatGLM3 appends 9 special tokens after the sentencepiece vocabulary: [MASK] [gMASK]
# [sMASK] sop eop <|system|> <|user|> <|assistant|> <|observation|>
_SPECIAL_TOKENS = 9
_TEXT = [
    "a dog runs on the beach with a red ball",
    "the cat sleeps on a warm sofa near the window",
    "a car drives down a wet street at night",
    "please summarize attributes of the above words",
    "generate different sentences about a scene containing two things",
    "answer with a numbered list one item per line and nothing else",
] * 20


def _tokenizer():
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_TEXT), model_writer=buffer, vocab_size=120,
        model_type="bpe", character_coverage=1.0, minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=buffer.getvalue())
    return SimpleNamespace(tokenizer=SimpleNamespace(sp_model=processor)), processor


def write_tiny_chatglm3(path, seed=0):
    """A 1-layer ChatGLM3 with random weights, written by chatglm-cpp's converter."""
    tokenizer, processor = _tokenizer()
    hidden, heads, kv_groups, ffn, layers = 64, 2, 1, 128, 1
    head_dim = hidden // heads
    vocab = processor.get_piece_size() + _SPECIAL_TOKENS
    config = SimpleNamespace(
        add_bias_linear=False, add_qkv_bias=True,
        apply_residual_connection_post_layernorm=False, kv_channels=head_dim,
        num_attention_heads=heads, multi_query_attention=True, multi_query_group_num=kv_groups,
        original_rope=True, post_layer_norm=True, rmsnorm=True, padded_vocab_size=vocab,
        hidden_size=hidden, num_layers=layers, ffn_hidden_size=ffn, layernorm_epsilon=1e-5,
        pre_seq_len=None, rope_ratio=1, seq_length=512, eos_token_id=processor.eos_id(),
        pad_token_id=processor.pad_id() if processor.pad_id() >= 0 else 0,
        quantization_bit=None,
    )
    generator = torch.Generator().manual_seed(seed)

    def weight(*shape):
        return torch.randn(*shape, generator=generator) * 0.5

    qkv = hidden + 2 * kv_groups * head_dim
    state = {"transformer.embedding.word_embeddings.weight": weight(vocab, hidden)}
    for i in range(layers):
        prefix = f"transformer.encoder.layers.{i}."
        state.update({
            prefix + "input_layernorm.weight": torch.ones(hidden),
            prefix + "self_attention.query_key_value.weight": weight(qkv, hidden),
            prefix + "self_attention.query_key_value.bias": weight(qkv),
            prefix + "self_attention.dense.weight": weight(hidden, hidden),
            prefix + "post_attention_layernorm.weight": torch.ones(hidden),
            prefix + "mlp.dense_h_to_4h.weight": weight(2 * ffn, hidden),
            prefix + "mlp.dense_4h_to_h.weight": weight(hidden, ffn),
        })
    state["transformer.encoder.final_layernorm.weight"] = torch.ones(hidden)
    state["transformer.output_layer.weight"] = weight(vocab, hidden)
    model = SimpleNamespace(config=config, state_dict=lambda: state)
    with open(path, "wb") as handle:
        ChatGLM3Converter.convert(handle, model, tokenizer, GGMLType.F16)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_chatglm3(tmp_path_factory.mktemp("chatglm") / "tiny-chatglm3.bin")


def test_chatglm_backend_answers_through_pipeline_chat(tiny_model, tmp_path):
    backend = create_backend("chatglm-cpp", BackendOptions(
        model=str(tiny_model), max_tokens=12, n_ctx=512, cache_dir=str(tmp_path)))
    identity = backend.identity()
    assert identity["backend"] == "chatglm-cpp"
    assert identity["model_type"] == "ChatGLM3"
    assert len(identity["model_sha256"]) == 64
    assert identity["settings"]["do_sample"] is False
    question = class_attributes("dog", 3)
    first, second = list(backend.answer_many([question, question]))
    assert isinstance(first, str)
    assert first == second, "greedy decoding must give the same answer twice"
    # the hash is remembered by path, size and mtime
    assert str(tiny_model.resolve()) in (tmp_path / "model_hashes.json").read_text()


def test_chatglm_gibberish_run_finishes_and_counts_unusable(tiny_model, tmp_path):
    classes = ["dog", "cat", "car"]
    config = RunConfig(
        classnames=classes, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
        counts=build_counts("small"), profile="small", backend="chatglm-cpp",
        options=BackendOptions(model=str(tiny_model), max_tokens=24, n_ctx=512),
        progress=False,
    )
    manifest = run(config)
    questions = manifest["questions"]
    assert questions["common_attributes"]["asked"] == 1
    assert questions["class_attributes"]["asked"] == 3
    assert manifest["llm_calls"] == sum(s["llm_calls"] for s in questions.values())
    assert manifest["llm_calls"] > 0
    attributes = json.loads((tmp_path / "out" / "attributes.json").read_text())
    assert set(attributes["per_class"]) == set(classes)
    groups = json.loads((tmp_path / "out" / "groups.json").read_text())
    assert all(set(g) <= set(classes) for level in groups.values() for g in level)
    cached = (tmp_path / "cache" / "answers.jsonl").read_text().splitlines()
    assert len(cached) == manifest["llm_calls"]
    assert run(config)["llm_calls"] == 0
