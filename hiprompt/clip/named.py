"""Named CLIPs beyond open_clip's list: small architectures of RN50's family (ResNet tower
with an attention pool, transformer text tower, CLIP's BPE tokenizer) and the weights a
package ships for them, found by name (`build_clip(name, "packaged")`).

`tiny` (random weights, for tests) is defined here; the toy worlds register their CLIPs
when `hiprompt.toyworld.worlds` is imported, which the first lookup of an unknown name does
(`PROVIDERS`).
"""

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class NamedClip:
    config: dict  # open_clip.model.CLIP(**config)
    weights: Optional[Path] = None  # the shipped state dict, if any


_NAMED = {
    "tiny": NamedClip(config=dict(
        embed_dim=64,
        vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=16, head_width=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
    )),
}
PROVIDERS = ("hiprompt.toyworld.worlds",)  # modules that register their CLIPs on import
_providers_loaded = False


def register_clip(name: str, config: dict, weights=None) -> None:
    """Make `name` buildable by `build_clip`; `weights` is what `packaged` loads."""
    known = _NAMED.get(name)
    entry = NamedClip(config, Path(weights) if weights is not None else None)
    if known is not None and known != entry:
        raise ValueError(f"a CLIP named {name!r} is registered already, with another config or weights")
    _NAMED[name] = entry


def named_clip(name: str) -> Optional[NamedClip]:
    """The registered CLIP called `name`, or None (then `name` is open_clip's to know)."""
    global _providers_loaded
    if name not in _NAMED and not _providers_loaded:
        _providers_loaded = True
        for module in PROVIDERS:
            importlib.import_module(module)
    return _NAMED.get(name)


def named_clips() -> list:
    named_clip("")  # loads the providers
    return sorted(_NAMED)
