"""LLMKnowledgeText: the text-only training set read from an `llm_knowledge` folder."""

from hiprompt.data.knowledge import KnowledgeText
from hiprompt.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class LLMKnowledgeText(KnowledgeText):
    """Sentences of DATASET.TEXT.KIND, labelled by DATASET.TEXT.LABELS, over `classnames`."""
