"""The CLIP wrapper: agreement with open_clip, dense features, real RN50 shapes, weights."""

import open_clip
import pytest
import torch

from hiprompt.clip import WeightsUnavailableError, build_clip


def test_global_and_text_features_match_open_clip(tiny_clip):
    images = torch.randn(2, 3, 64, 64)
    global_feats, dense = tiny_clip.encode_image_features(images)
    assert torch.allclose(global_feats, tiny_clip.model.encode_image(images), atol=1e-5)
    tokens = tiny_clip.tokenize(["a photo of a dog.", "cat"])
    eot, per_token, mask = tiny_clip.encode_text(tokens)
    assert torch.allclose(eot, tiny_clip.model.encode_text(tokens), atol=1e-5)
    assert per_token.shape == (2, 77, tiny_clip.embed_dim)
    # content = after start-of-text up to end-of-text: "a photo of a dog ." + EOT = 7, "cat" + EOT = 2
    assert mask.sum(dim=1).tolist() == [7, 2]
    assert torch.allclose(per_token[torch.arange(2), tokens.argmax(-1)], eot)


def test_dense_features_are_value_and_output_projections_of_every_position(tiny_clip):
    visual = tiny_clip.model.visual
    captured = {}
    handle = visual.attnpool.register_forward_hook(lambda module, inputs, output: captured.update(x=inputs[0]))
    images = torch.randn(1, 3, 64, 64)
    visual(images)
    handle.remove()
    pool = visual.attnpool
    trunk = captured["x"].flatten(2).permute(0, 2, 1)  # [B, HW, C]
    expected = pool.c_proj(pool.v_proj(trunk + pool.positional_embedding[1:]))
    _, dense = tiny_clip.encode_image_features(images)
    assert torch.allclose(dense, expected, atol=1e-5)

    # TaI-DPT's variant: the positions without the attention pool's positional embedding
    without = build_clip("tiny", "random", seed=0, dense_pos_embed=False)
    global_without, dense_without = without.encode_image_features(images)
    assert torch.allclose(dense_without, pool.c_proj(pool.v_proj(trunk)), atol=1e-5)
    assert torch.allclose(global_without, tiny_clip.encode_image_features(images)[0], atol=1e-6)
    assert without.image_identity() != tiny_clip.image_identity()  # separate feature caches
    assert without.identity() == tiny_clip.identity()  # the text side is the same


def attention_pool_input(clip, images):
    """The last stage's grid with the mean in front, [1 + HW, B, C], as both papers' pools see it."""
    captured = {}
    handle = clip.model.visual.attnpool.register_forward_hook(lambda m, inputs, out: captured.update(x=inputs[0]))
    clip.model.visual(images)
    handle.remove()
    grid = captured["x"].flatten(2).permute(2, 0, 1)  # [HW, B, C]
    return torch.cat([grid.mean(dim=0, keepdim=True), grid])


def test_taidpt_global_feature_is_its_attention_pool_without_the_positional_embedding(tiny_clip):
    """TaI-DPT's test forward: `attnpool(image_feat, if_pos=False)`, its multi-head attention
    over all 1 + HW positions without the embedding, the output's first position taken."""
    pool = tiny_clip.model.visual.attnpool
    images = torch.randn(2, 3, 64, 64)
    x = attention_pool_input(tiny_clip, images)  # no positional embedding added
    out, _ = torch.nn.functional.multi_head_attention_forward(
        query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0, out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=False, need_weights=False)
    expected = out.permute(1, 2, 0)[:, :, 0]  # [B, D]: TaI-DPT's global_feat = x[:, :, 0]
    taidpt = build_clip("tiny", "random", seed=0, global_pos_embed=False)
    global_feats, _ = taidpt.encode_image_features(images)
    torch.testing.assert_close(global_feats, expected, rtol=0, atol=1e-5)
    assert (global_feats - tiny_clip.encode_image_features(images)[0]).abs().max() > 1e-3  # CLIP's differs
    assert taidpt.image_identity() != tiny_clip.image_identity()


def test_dualcoop_dense_features_lead_with_the_mean_token(tiny_clip):
    """DualCoOp's image encoder: c_proj(v_proj(x + positional embedding)) over all 1 + HW
    positions, the mean token first, all of them aggregated."""
    pool = tiny_clip.model.visual.attnpool
    images = torch.randn(2, 3, 64, 64)
    x = attention_pool_input(tiny_clip, images) + pool.positional_embedding[:, None, :]  # [1 + HW, B, C]
    expected = torch.nn.functional.linear(torch.nn.functional.linear(x, pool.v_proj.weight, pool.v_proj.bias),
                                          pool.c_proj.weight, pool.c_proj.bias).permute(1, 0, 2)  # [B, 1 + HW, D]
    dualcoop = build_clip("tiny", "random", seed=0, dense_mean_token=True)
    global_feats, dense = dualcoop.encode_image_features(images)
    assert dense.shape == (2, 1 + 4, tiny_clip.embed_dim)  # 64 px: a 2 x 2 grid and the mean
    torch.testing.assert_close(dense, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(dense[:, 1:], tiny_clip.encode_image_features(images)[1], rtol=0, atol=1e-6)
    assert dualcoop.image_identity() != tiny_clip.image_identity()


def test_a_vit_state_dict_of_unknown_origin_asks_for_the_activation(tmp_path):
    """OpenAI's ViT weights saved as a plain state dict lose the keys that mark them, and
    open_clip's ViT tags disagree on the activation: the build stops and asks."""
    path = tmp_path / "vit.pt"
    torch.save({"visual.proj": torch.zeros(768, 512)}, path)
    with pytest.raises(ValueError, match=r"vit\.pt: a ViT-B-32 state dict .* set MODEL\.BACKBONE\.ACTIVATION "
                                         r"quickgelu for OpenAI's weights or gelu"):
        build_clip("ViT-B-32", str(path))


def test_real_rn50_and_vit_shapes():
    rn50 = build_clip("RN50", "random")
    global_feats, dense = rn50.encode_image_features(torch.randn(1, 3, 224, 224))
    assert global_feats.shape == (1, 1024) and dense.shape == (1, 49, 1024)
    _, dense_large = rn50.encode_image_features(torch.randn(1, 3, 288, 288))
    assert dense_large.shape == (1, 81, 1024)  # positional embedding resized to the 9x9 grid
    assert rn50.token_width == 512 and rn50.embed_dim == 1024
    vit = build_clip("ViT-B-32", "random")
    global_feats, dense = vit.encode_image_features(torch.randn(1, 3, 224, 224))
    assert global_feats.shape == (1, 512) and dense.shape == (1, 49, 512)


def test_offline_tag_fails_with_one_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as error:
        build_clip("RN50", "openai")
    message = str(error.value)
    assert "RN50" in message and "MODEL.BACKBONE.WEIGHTS" in message and "RN50.pt" in message
    with pytest.raises(WeightsUnavailableError, match="neither a file nor a pretrained tag"):
        build_clip("RN50", "/no/such/RN50.pt")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_clip("RN5O", "random")


def test_local_checkpoint_files_load(tmp_path):
    source = open_clip.create_model("RN50", pretrained=None)
    path = tmp_path / "rn50.pt"
    torch.save(source.state_dict(), path)
    loaded = build_clip("RN50", str(path))
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.model.state_dict().values()))
    assert loaded.identity().startswith("RN50@file-")
    assert loaded.identity().endswith("+quickgelu")  # every RN50 weight set is QuickGELU-trained

    tiny = build_clip("tiny", "random", seed=3)
    tiny_path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), tiny_path)
    again = build_clip("tiny", str(tiny_path))
    tokens = tiny.tokenize(["a cat."])
    assert torch.equal(tiny.encode_text(tokens)[0], again.encode_text(tokens)[0])


def test_backbone_is_frozen(tiny_clip):
    assert not any(p.requires_grad for p in tiny_clip.parameters())
    tiny_clip.train()
    assert not tiny_clip.model.training  # batch-norm statistics never move
