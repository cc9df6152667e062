"""Description features: the ragged memory-mapped store against the encoder's own output,
resuming an interrupted build, the budget switch, and equal losses with on-the-fly encoding."""

import json
import logging
import mmap
import re

import numpy as np
import pytest
import torch

from hiprompt.cache import text_features as tf
from hiprompt.config import get_cfg_default
from hiprompt.model.method import PromptedCLIP

CLASSES = ["dog", "cat", "car", "bus"]
TEXTS = [
    "a dog.", "a cat sleeps on the sofa next to the dog.", "a red car.", "the bus stops.",
    "two cats and a dog play in the garden while a bus passes by on the road.", "car.",
    "a bus and a car wait at the light.", "the cat.", "dogs bark at the passing bus in the morning.",
]


def expected_features(clip, text):
    """From the library path at the full 77 positions: eot, and the content tokens 1..eot as float16."""
    tokens = clip.tokenize([text])
    eot, per_token, mask = clip.encode_text(tokens)
    end = int(tokens.argmax())
    assert mask[0, 1:end + 1].all() and not mask[0, 0]
    return eot[0], per_token[0, 1:end + 1].half().float()


def test_store_holds_each_description_at_its_own_length(tiny_clip, tmp_path):
    store = tf.text_features(tiny_clip, TEXTS, tmp_path, chunk_size=4, progress=False)
    assert isinstance(store, tf.FeatureStore) and len(store) == len(TEXTS)
    chunks = sorted(p.name for p in store.folder.glob("chunk-*.eot.npy"))
    assert chunks == [f"chunk-00000{k}.eot.npy" for k in range(3)]
    offsets = np.load(store.folder / "chunk-000000.offsets.npy")
    lengths = [int(tiny_clip.tokenize([t]).argmax()) for t in TEXTS[:4]]
    assert offsets.tolist() == np.cumsum([0] + lengths).tolist()  # ragged: no padding stored
    index = torch.tensor([8, 0, 4, 5])
    eot, tokens, mask = store.batch(index)
    assert tokens.shape[1] == max(int(tiny_clip.tokenize([TEXTS[i]]).argmax()) for i in index.tolist())
    for row, i in enumerate(index.tolist()):
        want_eot, want_tokens = expected_features(tiny_clip, TEXTS[i])
        n = len(want_tokens)
        assert mask[row, :n].all() and not mask[row, n:].any()
        torch.testing.assert_close(eot[row], want_eot, rtol=0, atol=1e-5)
        torch.testing.assert_close(tokens[row, :n], want_tokens, rtol=0, atol=2e-3)  # float16 storage
        assert not tokens[row, n:].any()
    assert isinstance(store._chunks[0][2][1], mmap.mmap)  # memory-mapped, not loaded
    again = store.batch(index)  # read again after the pages were let go of
    assert all(torch.equal(x, y) for x, y in zip(again, (eot, tokens, mask)))
    with pytest.raises(IndexError, match="description 9 of a store of 9"):
        store.batch(torch.tensor([9]))


def open_clip_text_forward(clip, text):
    """The text tower written out on open_clip's own modules, at all 77 positions: token and
    positional embeddings, the residual blocks under the causal mask, the final norm and the
    projection -> [77, D]; its end-of-text row is checked against open_clip's encode_text."""
    model = clip.model
    tokens = clip.tokenize([text])
    with torch.no_grad():
        x = model.token_embedding(tokens) + model.positional_embedding
        for block in model.transformer.resblocks:
            x = block(x, attn_mask=model.attn_mask)
        x = model.ln_final(x) @ model.text_projection
        torch.testing.assert_close(x[0, int(tokens.argmax())], model.encode_text(tokens)[0], rtol=0, atol=1e-5)
    return x[0], int(tokens.argmax())


def test_stored_values_are_the_text_towers_features_written_out(tiny_clip, tmp_path):
    """Each stored description: its eot feature in float32, and the features of positions
    1..eot (start-of-text excluded, end-of-text included) rounded to float16, as open_clip's
    modules compute them in plain torch."""
    store = tf.text_features(tiny_clip, TEXTS, tmp_path, chunk_size=4, progress=False)
    assert isinstance(store, tf.FeatureStore)
    index = torch.arange(len(TEXTS))
    eot, tokens, mask = store.batch(index)
    assert eot.dtype == torch.float32 and tokens.dtype == torch.float32
    for row, text in enumerate(TEXTS):
        features, end = open_clip_text_forward(tiny_clip, text)
        assert int(mask[row].sum()) == end  # positions 1..end
        torch.testing.assert_close(eot[row], features[end], rtol=0, atol=1e-5)
        torch.testing.assert_close(tokens[row, :end], features[1:end + 1].half().float(), rtol=0, atol=2e-3)
        assert not torch.equal(tokens[row, 0], features[0].half().float())  # the start token is not stored
    half = store.batch(torch.tensor([1]))[1][0]
    assert torch.equal(half, half.half().float())  # stored in float16


def test_interrupted_build_resumes_with_the_missing_chunks_only(tiny_clip, tmp_path, monkeypatch):
    calls = []  # the token ids of each encoder call of the build
    original = tf.encode_token_ids

    def failing_after_two(clip, token_ids, device="cpu"):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(token_ids)
        return original(clip, token_ids, device)

    def ids(texts):
        return {tuple(row) for row in tiny_clip.tokenize(texts).tolist()}

    monkeypatch.setattr(tf, "ENCODE_BATCH", 2)
    monkeypatch.setattr(tf, "encode_token_ids", failing_after_two)
    with pytest.raises(KeyboardInterrupt):
        tf.text_features(tiny_clip, TEXTS, tmp_path, chunk_size=2, progress=False)
    folder = tf.store_folder(tiny_clip, TEXTS, tmp_path, chunk_size=2)
    assert not (folder / "meta.json").exists() and len(list(folder.glob("chunk-*.eot.npy"))) == 2
    monkeypatch.setattr(tf, "encode_token_ids", lambda clip, token_ids, device="cpu": calls.append(token_ids)
                        or original(clip, token_ids, device))
    resumed = tf.text_features(tiny_clip, TEXTS, tmp_path, chunk_size=2, progress=False)
    # chunks 0 and 1 were not encoded again; within a chunk the shorter description goes first
    assert [{tuple(row) for row in call.tolist()} for call in calls[2:]] == [ids(TEXTS[4:6]), ids(TEXTS[6:8]),
                                                                             ids(TEXTS[8:])]
    for call in calls:
        lengths = tiny_clip.eot_positions(call).tolist()
        assert lengths == sorted(lengths)
    fresh = tf.text_features(tiny_clip, TEXTS, tmp_path / "fresh", chunk_size=2, progress=False)
    every = torch.arange(len(TEXTS))
    for got, want in zip(resumed.batch(every), fresh.batch(every)):
        assert torch.equal(got, want)


def test_budget_switches_to_on_the_fly_and_the_cache_key_covers_the_layout(tiny_clip, tmp_path):
    estimate = tf.estimated_store_bytes(tiny_clip, TEXTS)
    lengths = [int(tiny_clip.tokenize([t]).argmax()) for t in TEXTS]
    assert estimate == int(len(TEXTS) * (np.mean(lengths) * 64 * 2 + 64 * 4 + 8))  # D = 64
    assert isinstance(tf.text_features(tiny_clip, TEXTS, tmp_path, budget_bytes=estimate - 1), tf.OnTheFlyFeatures)
    assert not (tmp_path / "text").exists()
    assert isinstance(tf.text_features(tiny_clip, TEXTS, tmp_path, budget_bytes=estimate, progress=False),
                      tf.FeatureStore)
    assert tf.store_folder(tiny_clip, TEXTS, tmp_path, 4) != tf.store_folder(tiny_clip, TEXTS, tmp_path, 8)
    assert tf.store_folder(tiny_clip, TEXTS, tmp_path) != tf.store_folder(tiny_clip, TEXTS[:-1], tmp_path)
    with pytest.raises(ValueError, match="corpus is empty"):
        tf.text_features(tiny_clip, [], tmp_path)


def test_store_and_on_the_fly_give_the_same_losses(tiny_clip, tmp_path):
    hp = get_cfg_default().TRAINER.HIPROMPT
    hp.N_CTX_SHARED, hp.N_CTX_COARSE, hp.N_CTX_FINE, hp.N_CTX_CLASS = 2, 1, 1, 1
    torch.manual_seed(0)
    model = PromptedCLIP(tiny_clip, CLASSES, {"coarse": [["dog", "cat"], ["car", "bus"]], "fine": []}, hp)
    labels = torch.tensor([[float(c in t) for c in CLASSES] for t in TEXTS])  # [N, C]
    store = tf.text_features(tiny_clip, TEXTS, tmp_path, chunk_size=4, progress=False)
    on_the_fly = tf.text_features(tiny_clip, TEXTS, tmp_path / "other", budget_bytes=0)
    assert isinstance(on_the_fly, tf.OnTheFlyFeatures)
    for index in (torch.tensor([0, 3, 4, 7]), torch.tensor([8, 1, 2]), torch.arange(len(TEXTS))):
        loss_store, _ = model.text_loss(*store.batch(index), labels[index])
        loss_fly, _ = model.text_loss(*on_the_fly.batch(index), labels[index])
        assert loss_store.item() > 0
        assert loss_fly.item() == pytest.approx(loss_store.item(), rel=1e-6, abs=1e-7)


def test_budget_key_is_in_the_schema_and_checked():
    from hiprompt.config import ConfigError, validate_cfg

    cfg = get_cfg_default()
    assert cfg.DATASET.TEXT.FEATURE_BUDGET_GB == 64.0 and cfg.TRAINER.HIPROMPT.PROMPT_ENCODING == "tree"
    cfg.DATASET.TEXT.FEATURE_BUDGET_GB = -1.0
    with pytest.raises(ConfigError, match="DATASET.TEXT.FEATURE_BUDGET_GB=-1.0"):
        validate_cfg(cfg)


def test_a_finished_store_is_found_again_without_encoding_and_says_so(tiny_clip, tmp_path, monkeypatch, caplog):
    built = tf.text_features(tiny_clip, TEXTS, tmp_path, chunk_size=4, progress=False)
    meta = json.loads((built.folder / "meta.json").read_text())
    assert meta == {"backbone": tiny_clip.identity(), "count": len(TEXTS), "chunk_size": 4, "chunks": 3, "format": 2}

    def no_encoding(*args, **kwargs):
        raise AssertionError("a finished store is not encoded again")

    monkeypatch.setattr(tf, "encode_token_ids", no_encoding)  # what the build and on-the-fly encoding call
    with caplog.at_level(logging.INFO, logger="hiprompt.cache.text_features"):
        found = tf.text_features(tiny_clip, TEXTS, tmp_path, chunk_size=4)
    assert [r.getMessage() for r in caplog.records] == [f"description features from cache {built.folder}"]
    assert isinstance(found, tf.FeatureStore) and (found.folder, len(found), found.chunk_size) == (built.folder, 9, 4)
    index = torch.tensor([8, 3, 4, 0])
    for row, i in enumerate(index.tolist()):
        want_eot, want_tokens = expected_features(tiny_clip, TEXTS[i])
        eot, tokens, mask = found.batch(index)
        torch.testing.assert_close(eot[row], want_eot, rtol=0, atol=1e-5)
        torch.testing.assert_close(tokens[row, :len(want_tokens)], want_tokens, rtol=0, atol=2e-3)


def test_the_budget_switch_and_a_resumed_build_are_logged(tiny_clip, tmp_path, monkeypatch, caplog):
    estimate = tf.estimated_store_bytes(tiny_clip, TEXTS)
    with caplog.at_level(logging.INFO, logger="hiprompt.cache.text_features"):
        tf.text_features(tiny_clip, TEXTS, tmp_path, budget_bytes=estimate, progress=False)  # within: no message
        assert caplog.records == []
        tf.text_features(tiny_clip, TEXTS, tmp_path / "small", budget_bytes=estimate / 2)
    assert [r.getMessage() for r in caplog.records] == [
        f"description features: a store would take about {estimate / 1e9:.1f} GB, over the budget of "
        f"{estimate / 2e9:.1f} GB (DATASET.TEXT.FEATURE_BUDGET_GB); encoding each batch on the fly"]
    # the numbers are in GB of 1e9 bytes, rounded to 0.1 (just above a half: 2.250000001 -> 2.3)
    monkeypatch.setattr(tf, "estimated_store_bytes", lambda clip, texts: 2.250000001e9)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hiprompt.cache.text_features"):
        tf.text_features(tiny_clip, TEXTS, tmp_path / "big", budget_bytes=1.250000001e9)
    assert "about 2.3 GB, over the budget of 1.3 GB" in caplog.records[0].getMessage()

    folder = tf.store_folder(tiny_clip, TEXTS, tmp_path / "resumed", chunk_size=4)
    tf.build_store(tiny_clip, TEXTS[:4], folder, chunk_size=4, progress=False)  # chunk 0 only (the same texts)
    (folder / "meta.json").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hiprompt.cache.text_features"):
        tf.text_features(tiny_clip, TEXTS, tmp_path / "resumed", chunk_size=4, progress=False)
    assert [r.getMessage() for r in caplog.records] == [
        f"description features: resuming {folder} with 1 of 3 chunks present"]


def test_progress_is_shown_by_default_counting_resumed_chunks(tiny_clip, tmp_path, capsys):
    folder = tf.store_folder(tiny_clip, TEXTS, tmp_path, chunk_size=4)
    tf.build_store(tiny_clip, TEXTS[:4], folder, chunk_size=4, progress=False)  # chunk 0 present
    (folder / "meta.json").unlink()
    assert capsys.readouterr().err == ""
    tf.text_features(tiny_clip, TEXTS, tmp_path, chunk_size=4)
    bar = capsys.readouterr().err
    assert re.search(r"(^|\r)encoding descriptions: ", bar)  # tqdm's line: the description, then the count
    assert "9/9" in bar and "4/9" in bar  # starts at the 4 of chunk 0
    tf.build_store(tiny_clip, TEXTS, tmp_path / "direct", chunk_size=4)  # build_store's own default
    assert "encoding descriptions" in capsys.readouterr().err
    tf.text_features(tiny_clip, TEXTS, tmp_path / "quiet", chunk_size=4, progress=False)
    assert capsys.readouterr().err == ""


def test_batches_cover_the_index_in_slices(tiny_clip, tmp_path):
    store = tf.text_features(tiny_clip, TEXTS, tmp_path, chunk_size=4, progress=False)
    index = torch.tensor([8, 7, 6, 5, 4, 3, 2, 1, 0])
    parts = list(store.batches(index, size=4))
    assert [len(eot) for eot, _, _ in parts] == [4, 4, 1]
    eots = torch.cat([eot for eot, _, _ in parts])
    for row, i in enumerate(index.tolist()):
        torch.testing.assert_close(eots[row], expected_features(tiny_clip, TEXTS[i])[0], rtol=0, atol=1e-5)
    assert len(list(store.batches(index))) == 1  # ENCODE_BATCH (256) at a time


def test_npy_files_of_format_2_and_fortran_order(tmp_path):
    from numpy.lib import format as npy_format

    array = np.arange(12, dtype=np.float16).reshape(3, 4)
    path = tmp_path / "v2.npy"
    with open(path, "wb") as handle:
        npy_format.write_array(handle, array, version=(2, 0))
    mapped, _ = tf._map_npy(path)
    assert np.array_equal(mapped, array) and mapped.dtype == np.float16
    np.save(tmp_path / "f.npy", np.asfortranarray(array))
    with pytest.raises(ValueError) as error:
        tf._map_npy(tmp_path / "f.npy")
    assert str(error.value) == f"{tmp_path / 'f.npy'}: a Fortran-ordered array, not written by this module"


def test_an_empty_corpus_is_named(tiny_clip, tmp_path):
    with pytest.raises(ValueError) as error:
        tf.text_features(tiny_clip, [], tmp_path)
    assert str(error.value) == "no descriptions to encode: the text corpus is empty"


@pytest.mark.parametrize("start", ["cpu", "device"])
@pytest.mark.parametrize("budget", [float("inf"), 0])
def test_features_are_encoded_on_the_given_device(tmp_path, start, budget):
    """On an emulated CUDA device (a CPU tensor meeting one on it raises): the CLIP is moved
    to `device` and the tokens go with it; the features are the CPU's, handed back on the CPU."""
    from emulated_cuda import emulated_cuda

    from hiprompt.clip import build_clip

    clip = build_clip("tiny", "random", seed=0)
    cpu_store = tf.text_features(clip, TEXTS, tmp_path / "cpu", chunk_size=4, progress=False)
    index = torch.tensor([8, 0, 4])
    expected = cpu_store.batch(index)
    with emulated_cuda():
        if start == "device":
            clip.to("cuda")
        features = tf.text_features(clip, TEXTS, tmp_path / "cuda", budget_bytes=budget, device="cuda",
                                    chunk_size=4, progress=False)
        got = features.batch(index)
        clip.to("cpu")
    assert all(t.device.type == "cpu" for t in got)
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[1], expected[1], rtol=0, atol=2e-3)
    assert torch.equal(got[2], expected[2])


def test_defaults_encode_on_the_cpu(tiny_clip, tmp_path):
    on_the_fly = tf.OnTheFlyFeatures(tiny_clip, TEXTS)
    store = tf.build_store(tiny_clip, TEXTS, tmp_path, chunk_size=4, progress=False)
    for got, want in zip(on_the_fly.batch(torch.tensor([2, 5])), store.batch(torch.tensor([2, 5]))):
        torch.testing.assert_close(got, want, rtol=0, atol=2e-3)
