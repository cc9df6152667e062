"""LLMKnowledgeText: the text-only training set read from an `llm_knowledge` folder."""

from hiprompt.knowledge import KnowledgeFolder
from hiprompt.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class LLMKnowledgeText:
    """Sentences of DATASET.TEXT.KIND, labelled by DATASET.TEXT.LABELS, over `classnames`."""

    def __init__(self, cfg, classnames=None):
        folder = KnowledgeFolder(cfg.DATASET.TEXT.DIR)
        self.groups = folder.groups
        self.corpus = folder.corpus(classnames, cfg.DATASET.TEXT.KIND, cfg.DATASET.TEXT.LABELS)
        self.classnames = self.corpus.classnames
