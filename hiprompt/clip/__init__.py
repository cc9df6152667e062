from hiprompt.clip.backbone import ClipBackbone, WeightsUnavailableError, build_clip

__all__ = ["ClipBackbone", "WeightsUnavailableError", "build_clip"]
