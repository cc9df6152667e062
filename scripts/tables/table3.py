"""Table 3: the components, local learning and the order loss, each on and off.

    python scripts/tables/table3.py --quick                 # toy world, one seed, 2 epochs
    python scripts/tables/table3.py --world coco --data DATA
"""

from common import World, compare_main, ours

PAPER = {(False, False): (52.4, 62.2), (True, False): (56.3, 66.0), (False, True): (53.2, 63.2),
         (True, True): (57.3, 66.8)}  # MS-COCO: (local learning, order loss) -> (F1, mAP)


def runs(world: World):
    rows = []
    for (local, order), (f1, map_) in PAPER.items():
        paper = {"F1": f1, "mAP": map_} if world.paper_dataset == "MS-COCO" else {}
        opts = (() if local else ("TRAINER.HIPROMPT.LOCAL_BRANCH", False)) + \
               (() if order else ("TRAINER.HIPROMPT.ORDER_LOSS", False))
        label = f"local learning {'✓' if local else '×'}, order loss {'✓' if order else '×'}"
        rows.append(ours(label, paper, opts))
    return rows


def main(argv=None):
    compare_main(__doc__, argv, "table3", "Table 3: components", "components", runs)


if __name__ == "__main__":
    main()
