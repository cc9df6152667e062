"""The frozen CLIP, built with open_clip, exposing what the method needs.

Text side: end-of-text features, per-token features with a padding mask, and a forward
from token embeddings (so learned context vectors can stand in for words).
Image side: the global (pooled) feature and dense per-position features: for a ResNet,
every last-stage position through the attention pool's value and output projections; for a
ViT, every patch token through the final norm and projection.
"""

import logging
import os
import zipfile
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, build_model_from_openai_state_dict
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import QuickGELU, VisionTransformer
from torch import nn

from hiprompt.clip.named import named_clip, named_clips
from hiprompt.fileio import file_sha256

log = logging.getLogger(__name__)

DOWNLOAD_HINT = (
    "No weights could be obtained for {name} ({pretrained!r}); this machine is probably "
    "offline. Download the checkpoint where you have internet access (for OpenAI's RN50: "
    "the original `RN50.pt` file, or open_clip's `{name}` weights tagged '{pretrained}'), "
    "copy it here, and pass its path instead of the tag: MODEL.BACKBONE.WEIGHTS "
    "/path/to/RN50.pt (or `--weights` / `HIPROMPT_WEIGHTS` in the scripts)."
)


class WeightsUnavailableError(RuntimeError):
    """The requested pretrained weights cannot be found or downloaded."""


# What OpenAI's own checkpoints hold beside the weights (their TorchScript archives keep
# these as tensors; a state dict taken from such an archive keeps them too).
OPENAI_STATE_DICT_MARKERS = ("input_resolution", "context_length", "vocab_size")
ACTIVATIONS = ("auto", "quickgelu", "gelu")


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _openai_state_dict(path: Path):
    """The state dict of an OpenAI-format checkpoint file (a TorchScript archive, or a state
    dict holding OpenAI's marker keys), or None when the file is in another format."""
    if _is_torchscript_archive(path):
        return torch.jit.load(str(path), map_location="cpu").state_dict()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, ValueError):
        return None  # not a plain state dict: open_clip's own loader reports what it is
    if isinstance(state, dict) and all(key in state for key in OPENAI_STATE_DICT_MARKERS):
        return state
    return None


def _tag_quick_gelu(name: str, tag: str) -> bool:
    """Whether the pretrained weights `tag` of `name` were trained with QuickGELU: OpenAI's
    always were; for others, open_clip's record of the tag says."""
    return tag == "openai" or bool(open_clip.get_pretrained_cfg(name, tag).get("quick_gelu", False))


def _file_quick_gelu(name: str, path: Path):
    """Auto activation for a non-OpenAI-format checkpoint file of architecture `name`: True
    when every pretrained tag open_clip knows for it was trained with QuickGELU (all ResNet
    CLIPs), None (the architecture config's own) when there are none. When its tags disagree
    (the ViTs: OpenAI's with QuickGELU, LAION's with GELU) the file cannot tell, since a state
    dict saved from OpenAI's model loses the keys that mark it; then the user must say."""
    votes = {_tag_quick_gelu(name, tag) for tag in open_clip.list_pretrained_tags_by_model(name)}
    if votes == {True, False}:
        raise ValueError(
            f"{path}: a {name} state dict whose activation cannot be told from the file (OpenAI's "
            f"{name} weights were trained with QuickGELU, others with GELU): set "
            "MODEL.BACKBONE.ACTIVATION quickgelu for OpenAI's weights or gelu for the others")
    return True if votes == {True} else None


def _explicit_quick_gelu(activation: str):
    if activation not in ACTIVATIONS:
        raise ValueError(f"MODEL.BACKBONE.ACTIVATION={activation!r}: expected one of {ACTIVATIONS}")
    return {"quickgelu": True, "gelu": False}.get(activation)


def uses_quick_gelu(model: nn.Module) -> bool:
    return any(isinstance(module, QuickGELU) for module in model.modules())


def build_clip(name: str = "RN50", pretrained: str = "openai", seed: int = 0, activation: str = "auto",
               dense_pos_embed: bool = True, global_pos_embed: bool = True,
               dense_mean_token: bool = False) -> "ClipBackbone":
    """Build the frozen backbone.

    name: an open_clip model name (`RN50`, `ViT-B-16`, ...) or a tiny config (`tiny`).
    pretrained: an open_clip tag (`openai`, `laion2b_s34b_b79k`, ...), a local checkpoint
    path (OpenAI's original TorchScript `.pt` files included), `packaged` for weights shipped
    with this package (the toy world's CLIP), or `random` / `""` for random weights (tests
    only). `seed` fixes random initialisation.
    activation: the transformer MLP's activation. `auto` builds what the weights were trained
    with: QuickGELU for OpenAI's weights (the `openai` tag, a TorchScript archive, a state
    dict in OpenAI's format) and for files of architectures whose every known weights use
    it; for other tags what open_clip's record of the tag says; otherwise the architecture
    config's own. `quickgelu` / `gelu` force one.
    dense_pos_embed: ResNet dense features with the attention pool's positional embedding
    added to every position (DualCoOp) or without it (TaI-DPT).
    global_pos_embed: the ResNet global feature from the attention pool with its positional
    embedding (CLIP's own) or without it (TaI-DPT's test-time forward).
    dense_mean_token: the ResNet dense features lead with the attention pool's mean token,
    projected like the other positions (DualCoOp aggregates over all HW + 1).
    """
    quick_gelu = _explicit_quick_gelu(activation)
    pretrained = pretrained or "random"
    named = named_clip(name)
    if pretrained == "packaged":
        if named is None or named.weights is None:
            shipped = [clip for clip in named_clips() if named_clip(clip).weights is not None]
            raise WeightsUnavailableError(f"no packaged weights for {name!r}: only for {shipped}")
        pretrained = str(named.weights)
    path = Path(os.path.expanduser(pretrained))
    is_file = pretrained != "random" and path.is_file()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if named is not None:
            model = CLIP(**named.config, quick_gelu=bool(quick_gelu))
            tokenizer_name = "RN50"
            if pretrained != "random":
                if not is_file:
                    raise WeightsUnavailableError(
                        f"{name}: no checkpoint file at {pretrained!r} (the small configs have "
                        "no downloadable weights: pass a state-dict file, or `random`)"
                    )
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        else:
            model = _build_open_clip(name, pretrained, path, is_file, quick_gelu)
            tokenizer_name = name
    if not isinstance(model, CLIP):
        raise ValueError(f"{name} has a separate (Hugging Face) text tower, which is not supported")
    if pretrained == "random":
        weights_id = f"random-seed{seed}"
    elif is_file:
        weights_id = f"file-{file_sha256(path)[:16]}"
    else:
        weights_id = pretrained
    weights_id += "+quickgelu" if uses_quick_gelu(model) else "+gelu"
    return ClipBackbone(model, open_clip.get_tokenizer(tokenizer_name), f"{name}@{weights_id}",
                        dense_pos_embed, global_pos_embed, dense_mean_token)


def _activation_overrides(quick_gelu) -> dict:
    """open_clip.create_model arguments for an activation (None: the config's own)."""
    if quick_gelu is None:
        return {}
    return {"force_quick_gelu": True} if quick_gelu else {"quick_gelu": False}


def _build_open_clip(name: str, pretrained: str, path: Path, is_file: bool, quick_gelu):
    """An open_clip model named `name` with the weights `pretrained` (tag, file or random)."""
    if name not in open_clip.list_models():
        raise ValueError(
            f"unknown backbone {name!r}: expected one of {named_clips()} or an "
            "open_clip model name such as RN50, RN101, ViT-B-32, ViT-B-16"
        )
    if pretrained == "random":
        return open_clip.create_model(name, pretrained=None, **_activation_overrides(quick_gelu))
    if is_file:
        openai_state = _openai_state_dict(path)
        if openai_state is not None:
            # OpenAI's format: the architecture is read off the weights' shapes (as OpenAI's
            # own loader does), with the activation its models were trained with.
            model = build_model_from_openai_state_dict(
                dict(openai_state), quick_gelu=True if quick_gelu is None else quick_gelu, cast_dtype=None
            )
            return model.float().eval()
        if quick_gelu is None:
            quick_gelu = _file_quick_gelu(name, path)
    elif pretrained in open_clip.list_pretrained_tags_by_model(name):
        if quick_gelu is None:
            quick_gelu = _tag_quick_gelu(name, pretrained)
    else:
        raise WeightsUnavailableError(
            f"{pretrained!r} is neither a file nor a pretrained tag of {name} "
            f"(tags: {open_clip.list_pretrained_tags_by_model(name)}). "
            + DOWNLOAD_HINT.format(name=name, pretrained=pretrained)
        )
    try:
        return open_clip.create_model(name, pretrained=str(path) if is_file else pretrained,
                                      **_activation_overrides(quick_gelu))
    except (RuntimeError, OSError) as error:
        raise WeightsUnavailableError(
            DOWNLOAD_HINT.format(name=name, pretrained=pretrained) + f" ({error})"
        ) from error


class ClipBackbone(nn.Module):
    """A frozen open_clip CLIP with global and dense features on both sides."""

    def __init__(self, model: CLIP, tokenizer, identity: str, dense_pos_embed: bool = True,
                 global_pos_embed: bool = True, dense_mean_token: bool = False):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._identity = identity
        self.dense_pos_embed, self.global_pos_embed = dense_pos_embed, global_pos_embed
        self.dense_mean_token = dense_mean_token
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    # ----------------------------------------------------------------- properties
    def identity(self) -> str:
        """Architecture, weights and activation, as used in cache keys."""
        return self._identity

    def image_identity(self) -> str:
        """`identity()` and the image-feature variant, as used in image-feature cache keys."""
        if not isinstance(self.model.visual, ModifiedResNet):
            return self._identity
        return (self._identity + ("" if self.dense_pos_embed else "+dense-without-pos-embed")
                + ("" if self.global_pos_embed else "+global-without-pos-embed")
                + ("+dense-with-mean-token" if self.dense_mean_token else ""))

    @property
    def embed_dim(self) -> int:
        return self.model.text_projection.shape[1]

    @property
    def token_width(self) -> int:
        return self.model.token_embedding.embedding_dim

    @property
    def context_length(self) -> int:
        return self.model.positional_embedding.shape[0]

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else size

    @property
    def dtype(self) -> torch.dtype:
        return self.model.token_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.token_embedding.weight.device

    def train(self, mode: bool = True):
        # The backbone is frozen: batch norm statistics never change.
        return super().train(False)

    # ----------------------------------------------------------------- text side
    def tokenize(self, texts) -> torch.Tensor:
        return self.tokenizer(list(texts))  # [N, L] on the CPU

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.token_embedding(tokens.to(self.device))  # [N, L, W] on the CLIP's device

    def encode_text_embeddings(self, embeddings: torch.Tensor, eot_index: torch.Tensor, length: int = None):
        """Run the text transformer on token embeddings.

        embeddings: [N, L, W] (L = context length); eot_index: [N] position of end-of-text.
        length: run on the first `length` positions only (at least every eot_index + 1).
        Under the causal mask no position sees a later one, so the features of those
        positions are the same as with all L (the shortcut of running to the longest
        end-of-text). Returns the projected end-of-text features [N, D] and per-token
        features [N, length or L, D].
        """
        model = self.model
        length = embeddings.shape[1] if length is None else length
        x = embeddings[:, :length] + model.positional_embedding[:length].to(embeddings.dtype)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        x = self.project_text(x)  # [N, length, D]
        eot = x[torch.arange(x.shape[0], device=x.device), eot_index.to(x.device)]  # [N, D]
        return eot, x

    def project_text(self, hidden: torch.Tensor) -> torch.Tensor:
        """The text tower's output head (final norm, projection): [..., W] -> [..., D]."""
        model = self.model
        x = model.ln_final(hidden)
        return x @ model.text_projection if not isinstance(model.text_projection, nn.Linear) else model.text_projection(x)

    @property
    def text_blocks(self):
        """The text transformer's residual attention blocks (open_clip ResidualAttentionBlock)."""
        return self.model.transformer.resblocks

    @staticmethod
    def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
        return tokens.argmax(dim=-1)  # end-of-text has the largest id in CLIP's vocabulary

    @staticmethod
    def content_mask(tokens: torch.Tensor) -> torch.Tensor:
        """[N, L] True at the positions that carry the sentence: after start-of-text, up to
        and including end-of-text. The start token is left out (under the causal mask its
        feature is the same for every sentence) and so is the padding."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        eot = ClipBackbone.eot_positions(tokens)
        return (positions[None, :] >= 1) & (positions[None, :] <= eot[:, None])

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor, truncate: bool = False):
        """Frozen text features of tokenised sentences: (eot [N, D], tokens [N, L, D], mask [N, L]).
        truncate: run only up to the longest end-of-text (L = its position + 1)."""
        tokens = tokens.to(self.device)
        eot_index = self.eot_positions(tokens)
        length = int(eot_index.max()) + 1 if truncate else None
        eot, per_token = self.encode_text_embeddings(self.token_embeddings(tokens), eot_index, length)
        return eot, per_token, self.content_mask(tokens)[:, :per_token.shape[1]]

    # ----------------------------------------------------------------- image side
    @torch.no_grad()
    def encode_image_features(self, images: torch.Tensor):
        """Global [B, D] and dense [B, P, D] image features (not normalised)."""
        visual = self.model.visual
        images = images.to(self.dtype)
        if isinstance(visual, ModifiedResNet):
            return self._resnet_features(visual, images)
        if isinstance(visual, VisionTransformer):
            return self._vit_features(visual, images)
        raise TypeError(f"dense features are not implemented for {type(visual).__name__}")

    def _resnet_features(self, visual: ModifiedResNet, images: torch.Tensor):
        x = visual.stem(images)
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = layer(x)  # [B, C, H, W]
        pool = visual.attnpool
        batch, channels, height, width = x.shape
        x = x.flatten(2).permute(2, 0, 1)  # [HW, B, C]
        trunk = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # [1 + HW, B, C]
        x = trunk + _resized_grid_embedding(pool.positional_embedding, height, width)[:, None, :].to(trunk.dtype)
        pooled_input = x if self.global_pos_embed else trunk
        pooled, _ = F.multi_head_attention_forward(
            query=pooled_input[:1], key=pooled_input, value=pooled_input,
            embed_dim_to_check=channels, num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight,
            v_proj_weight=pool.v_proj.weight, in_proj_weight=None,
            in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
            use_separate_proj_weight=True, training=False, need_weights=False,
        )
        global_feats = pooled[0]  # [B, D]
        positions = (x if self.dense_pos_embed else trunk)[0 if self.dense_mean_token else 1:]  # [P, B, C]
        dense = pool.c_proj(pool.v_proj(positions))  # [P, B, D], P = HW (+ 1 with the mean token)
        return global_feats, dense.permute(1, 0, 2)  # [B, D], [B, P, D]

    @staticmethod
    def _vit_features(visual: VisionTransformer, images: torch.Tensor):
        keep = visual.output_tokens
        visual.output_tokens = True
        try:
            pooled, tokens = visual(images)  # [B, D], [B, P, W]
        finally:
            visual.output_tokens = keep
        if visual.final_ln_after_pool:
            tokens = visual.ln_post(tokens)
        return pooled, tokens @ visual.proj  # [B, D], [B, P, D]


def _resized_grid_embedding(embedding: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The attention pool's positional embedding ([1 + S*S, C]) resized to a height x width grid."""
    side = int(round((embedding.shape[0] - 1) ** 0.5))
    if (side, side) == (height, width):
        return embedding
    grid = embedding[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)  # [1, C, S, S]
    grid = F.interpolate(grid.float(), size=(height, width), mode="bicubic", align_corners=False)
    grid = grid.to(embedding.dtype).permute(0, 2, 3, 1).reshape(height * width, -1)
    return torch.cat([embedding[:1], grid], dim=0)
