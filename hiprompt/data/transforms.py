"""The test-time image transform.

`square` (default) resizes the whole image to INPUT.SIZE, changing its aspect ratio but
keeping every object in view; `resize_crop` resizes the shorter side and centre-crops (CLIP's
own preprocessing), which can cut objects near the border off.
"""

from dataclasses import dataclass

from torchvision import transforms as T

from hiprompt.choices import check_choice

# OpenAI CLIP's input normalisation (the defaults of INPUT.PIXEL_MEAN / INPUT.PIXEL_STD)
CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("square", "resize_crop")  # INPUT.TEST_RESIZE
_INTERPOLATIONS = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}
INTERPOLATIONS = tuple(_INTERPOLATIONS)  # INPUT.INTERPOLATION


def _to_rgb(image):
    return image.convert("RGB")


@dataclass(frozen=True)
class TestTransform:
    """A test transform's settings; `build()` makes it, `key` names it for feature caches."""

    __test__ = False  # not a pytest test class

    size: tuple = (224, 224)  # (height, width)
    mode: str = "square"
    mean: tuple = CLIP_PIXEL_MEAN
    std: tuple = CLIP_PIXEL_STD
    interpolation: str = "bicubic"

    def __post_init__(self):
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(int(s) for s in self.size)
        if len(size) != 2:
            raise ValueError(f"INPUT.SIZE {self.size!r}: expected [height, width] or one int")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        check_choice(self.mode, RESIZE_MODES, "INPUT.TEST_RESIZE")
        check_choice(self.interpolation, INTERPOLATIONS, "INPUT.INTERPOLATION")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("INPUT.PIXEL_MEAN and INPUT.PIXEL_STD need 3 values (RGB)")

    @property
    def key(self) -> str:
        """Everything that changes the pixels the model sees, as one string."""
        return (
            f"{self.mode}-{self.size[0]}x{self.size[1]}-{self.interpolation}"
            f"-mean{list(self.mean)}-std{list(self.std)}"
        )

    def build(self) -> T.Compose:
        """PIL image -> [3, H, W] float tensor, normalised."""
        interpolation = _INTERPOLATIONS[self.interpolation]
        if self.mode == "square":
            resize = [T.Resize(self.size, interpolation=interpolation)]
        else:
            resize = [T.Resize(min(self.size), interpolation=interpolation), T.CenterCrop(self.size)]
        return T.Compose(
            [T.Lambda(_to_rgb), *resize, T.ToTensor(), T.Normalize(self.mean, self.std)]
        )
