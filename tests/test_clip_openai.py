"""OpenAI's weights build the model they were trained with (QuickGELU) on every loading path.

Small CLIPs of OpenAI's two architecture families (ResNet with attention pool, ViT) are
registered with open_clip as named configs, given random weights, and written as OpenAI
writes its checkpoints: a TorchScript archive and a state dict holding OpenAI's marker
keys. open_clip's own OpenAI loader (`load_openai_model`) is the reference.
"""

import json

import open_clip
import pytest
import torch
from open_clip.model import CLIP
from torch import nn

from hiprompt.clip import build_clip
from hiprompt.clip.backbone import OPENAI_STATE_DICT_MARKERS, uses_quick_gelu

TEXT_CFG = dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1)
# Head widths of 64, as OpenAI's models (and the shape-reading OpenAI loader) have them.
SMALL_CONFIGS = {
    "hiprompt-test-RN": dict(embed_dim=64, text_cfg=TEXT_CFG,
                             vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=8, head_width=64)),
    "hiprompt-test-ViT": dict(embed_dim=64, text_cfg=TEXT_CFG,
                              vision_cfg=dict(image_size=32, layers=1, width=64, patch_size=16, head_width=64)),
}


@pytest.fixture(scope="module")
def small_configs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model_configs")
    for name, cfg in SMALL_CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    return folder


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _write_torchscript_archive(state: dict, path) -> None:
    """A TorchScript archive whose state dict is `state` (OpenAI's `.pt` files are these)."""
    root = _Holder()
    for key, value in state.items():
        module = root
        *parents, leaf = key.split(".")
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, _Holder())
            module = getattr(module, part)
        module.register_buffer(leaf, value.clone())
    torch.jit.save(torch.jit.script(root), str(path))


def _openai_checkpoints(name: str, folder):
    """Random weights of `name`, rounded to float16 as OpenAI's are, in three files."""
    cfg = SMALL_CONFIGS[name]
    torch.manual_seed(7)
    model = CLIP(**cfg, quick_gelu=True)
    state = {k: (v.half().float() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    openai_state = dict(state, input_resolution=torch.tensor(cfg["vision_cfg"]["image_size"]),
                        context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    assert set(OPENAI_STATE_DICT_MARKERS) <= set(openai_state)
    paths = {kind: folder / f"{name}-{kind}.pt" for kind in ("torchscript", "openai_state", "plain_state")}
    _write_torchscript_archive(openai_state, paths["torchscript"])
    torch.save(openai_state, paths["openai_state"])
    torch.save(state, paths["plain_state"])
    return paths


@pytest.mark.parametrize("name", sorted(SMALL_CONFIGS))
def test_every_openai_loading_path_builds_quickgelu_with_the_same_features(name, small_configs, tmp_path):
    paths = _openai_checkpoints(name, tmp_path)
    size = SMALL_CONFIGS[name]["vision_cfg"]["image_size"]
    torch.manual_seed(0)
    images = torch.randn(2, 3, size, size)

    reference = open_clip.load_openai_model(str(paths["torchscript"]), device="cpu", precision="fp32")
    assert uses_quick_gelu(reference)
    tokens = open_clip.get_tokenizer(name)(["a photo of a dog.", "two cats on a sofa"])
    expected_text = reference.encode_text(tokens)
    expected_global = reference.encode_image(images)

    backbones = {
        "torchscript": build_clip(name, str(paths["torchscript"])),
        "openai_state": build_clip(name, str(paths["openai_state"])),
        "plain_state, forced": build_clip(name, str(paths["plain_state"]), activation="quickgelu"),
    }
    dense_reference = None
    for path_kind, clip in backbones.items():
        assert uses_quick_gelu(clip.model), path_kind
        assert clip.identity().endswith("+quickgelu"), path_kind
        eot, _, _ = clip.encode_text(tokens)
        global_feats, dense = clip.encode_image_features(images)
        assert torch.allclose(eot, expected_text, atol=1e-5), path_kind
        assert torch.allclose(global_feats, expected_global, atol=1e-5), path_kind
        dense_reference = dense if dense_reference is None else dense_reference
        assert torch.allclose(dense, dense_reference, atol=1e-5), path_kind

    # The same weights in plain GELU (what open_clip builds for a file of an architecture
    # whose config says GELU) give other features: the check above can fail.
    gelu = build_clip(name, str(paths["plain_state"]))
    assert not uses_quick_gelu(gelu.model) and gelu.identity().endswith("+gelu")
    assert (gelu.encode_text(tokens)[0] - expected_text).abs().max() > 1e-3
    assert gelu.identity() != backbones["plain_state, forced"].identity()  # caches keep them apart


def test_tag_path_builds_the_activation_each_tag_was_trained_with(monkeypatch):
    """No download: open_clip's download and checkpoint load are stubbed, so the model it
    builds for a tag is inspected as built."""
    import open_clip.factory as factory

    monkeypatch.setattr(factory, "download_pretrained", lambda cfg, **kwargs: "stub-checkpoint")
    monkeypatch.setattr(factory, "load_checkpoint", lambda model, path, **kwargs: None)
    assert uses_quick_gelu(build_clip("RN50", "openai").model)
    assert uses_quick_gelu(build_clip("RN50", "yfcc15m").model)  # open_clip's RN50 runs used QuickGELU too
    assert uses_quick_gelu(build_clip("ViT-B-32", "openai").model)
    laion = build_clip("ViT-B-32", "laion2b_s34b_b79k")
    assert not uses_quick_gelu(laion.model) and laion.identity() == "ViT-B-32@laion2b_s34b_b79k+gelu"
    assert not uses_quick_gelu(build_clip("RN50", "openai", activation="gelu").model)


def test_auto_activation_of_other_files_and_random_weights(tmp_path):
    from hiprompt.clip.backbone import _file_quick_gelu

    assert _file_quick_gelu("RN50", tmp_path / "w.pt") is True  # every known RN50 weight set is QuickGELU
    with pytest.raises(ValueError, match="set MODEL.BACKBONE.ACTIVATION"):  # OpenAI's and LAION's differ
        _file_quick_gelu("ViT-B-32", tmp_path / "w.pt")
    assert not uses_quick_gelu(build_clip("tiny", "random").model)  # the small configs' own GELU
    assert uses_quick_gelu(build_clip("tiny", "random", activation="quickgelu").model)
    with pytest.raises(ValueError, match="MODEL.BACKBONE.ACTIVATION='fast'"):
        build_clip("tiny", "random", activation="fast")
