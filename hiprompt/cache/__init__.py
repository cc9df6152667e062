"""Frozen-feature caches: image features (global and dense) and the description store."""
