"""Image test sets and the text training set, registered by name in DATASET_REGISTRY."""

from datasets import coco, custom, llm_text, nuswide, voc2007  # noqa: F401  (registration)
