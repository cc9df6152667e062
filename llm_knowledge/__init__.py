"""The LLM knowledge stage: class names in, everything prompt training needs out.

    python -m llm_knowledge --classes coco --backend chatglm-cpp --model chatglm3-ggml.bin \
        --out knowledge/coco

asks an LLM the questions of METHOD.md §2 (`llm_knowledge.questions`) through a back-end
(`llm_knowledge.backends`, where the back-end interface and registry are documented),
parses the answers tolerantly (`parsing`), labels every sentence with the classes it
mentions (`labelling.Labeller`, shared with the trainer) and writes, atomically:

    OUT/classnames.txt   one label name per line, in class order
    OUT/attributes.json  {"common": [...], "per_class": {cls: [...]}, "filtered": {cls: [...]}}
    OUT/groups.json      {"coarse": [[cls, ...], ...], "fine": [[cls, ...], ...]}
    OUT/corpus.jsonl     {"text", "asked", "found", "kind": coarse|fine|relation, "question"}
    OUT/synonyms.json    {cls: [synonym, ...]} used for labelling
    OUT/manifest.json    back-end identity, profile, counts, stages, per-question stats, time

Short list answers are topped up with seeded sampling, and a degenerate grouping is
re-asked and otherwise made from text embeddings (`grouping`). Every prompt and raw answer
is kept in an append-only cache (`cache.AnswerCache`).

From Python, the same run (the command calls it too):

    from llm_knowledge import build_knowledge
    manifest = build_knowledge(["cat", "dog"], "knowledge/pets", backend="openai",
                               base_url="http://127.0.0.1:8000/v1", profile="small")
"""

from llm_knowledge.labelling import Labeller
from llm_knowledge.pipeline import RunConfig, build_knowledge, run
from llm_knowledge.questions import Question

__all__ = ["Labeller", "Question", "RunConfig", "build_knowledge", "run"]
