"""Table 1: which text the prompts learn from (hand-crafted, image captions, coarse attributes,
fine-grained attributes, all of the LLM's knowledge), with the baselines' rows.

    python scripts/tables/table1.py --quick                 # toy world, one seed, 2 epochs
    python scripts/tables/table1.py --world coco --data DATA --captions DATA/annotations/captions_train2014.json
"""

from common import (Run, World, compare_main, composition, coop, dualcoop_text, ours, paper_row, taidpt,
                    zero_shot)

# the paper's Table 1: {row: {data set: (F1, mAP)}}
PAPER = {
    "hand": {"MS-COCO": (47.7, 62.1), "VOC2007": (58.5, 86.6), "NUS-WIDE": (30.4, 43.3)},
    "captions": {"MS-COCO": (48.8, 67.5), "VOC2007": (56.1, 86.8), "NUS-WIDE": (43.4, 44.1)},
    "coarse": {"MS-COCO": (51.9, 64.2), "VOC2007": (57.1, 88.0), "NUS-WIDE": (36.6, 46.0)},
    "fine": {"MS-COCO": (52.1, 64.4), "VOC2007": (58.1, 88.2), "NUS-WIDE": (36.8, 46.1)},
    "ours": {"MS-COCO": (57.3, 66.8), "VOC2007": (60.0, 88.7), "NUS-WIDE": (40.0, 47.0)},
}


def runs(world: World):
    paper = {key: paper_row(PAPER, key, world.paper_dataset) for key in PAPER}
    return [
        zero_shot(paper["hand"]),
        Run("Image captions (hierarchical 16/8/4/4)", "HierarchicalCoOp", composition(16, 8, 4, 4), text="captions",
            paper=paper["captions"]),
        ours("Coarse attributes (DATASET.TEXT.KIND coarse)", paper["coarse"], ("DATASET.TEXT.KIND", "coarse")),
        ours("Fine-grained attributes (DATASET.TEXT.KIND fine)", paper["fine"], ("DATASET.TEXT.KIND", "fine")),
        ours("Ours: all LLM knowledge", paper["ours"]),
        taidpt(), coop(), dualcoop_text(),
    ]


def main(argv=None):
    compare_main(__doc__, argv, "table1", "Table 1: training text", "knowledge", runs)


if __name__ == "__main__":
    main()
