"""Table 2: prompt types (hand-crafted, category-specific, shared, hierarchical), with the
baselines CoOp, TaI-DPT and DualCoOp beside them.

    python scripts/tables/table2.py --quick                 # toy world, one seed, 2 epochs
    python scripts/tables/table2.py --world coco --data DATA --captions DATA/annotations/captions_train2014.json
"""

from common import (Run, World, compare_main, composition, coop, dualcoop_images, dualcoop_text, ours,
                    taidpt, zero_shot)

PAPER = {"hand": (47.7, 62.1), "csc": (52.7, 64.8), "shared": (54.7, 66.3), "ours": (57.3, 66.8)}  # MS-COCO


def runs(world: World):
    paper = {k: ({"F1": v[0], "mAP": v[1]} if world.paper_dataset == "MS-COCO" else {}) for k, v in PAPER.items()}
    return [
        zero_shot(paper["hand"]),
        Run("Category-specific (32 C-S), global + local", "HierarchicalCoOp", composition(0, 0, 0, 32), paper=paper["csc"]),
        Run("Shared (32 S), global + local", "HierarchicalCoOp", composition(32, 0, 0, 0), paper=paper["shared"]),
        ours("Hierarchical (16/8/4/4), global + local", paper["ours"]),
        coop(), coop(csc=True), taidpt(), dualcoop_text(), dualcoop_images(),
    ]


def main(argv=None):
    compare_main(__doc__, argv, "table2", "Table 2: prompt types", "prompts", runs)


if __name__ == "__main__":
    main()
