"""Table 4: the composition of the 32 context tokens (S / P-S #1 / P-S #2 / C-S).

    python scripts/tables/table4.py --quick                 # toy world, one seed, 2 epochs
    python scripts/tables/table4.py --world coco --data DATA
"""

from common import World, compare_main, ours

PAPER = {(8, 8, 8, 8): (56.4, 66.6), (12, 8, 6, 6): (57.2, 66.6), (16, 8, 4, 4): (57.3, 66.8),
         (20, 4, 4, 4): (57.1, 66.7), (20, 6, 4, 2): (56.0, 66.5)}  # MS-COCO: (F1, mAP)


def runs(world: World):
    rows = []
    for counts, (f1, map_) in PAPER.items():
        paper = {"F1": f1, "mAP": map_} if world.paper_dataset == "MS-COCO" else {}
        label = "/".join(map(str, counts))
        rows.append(ours(label, paper, counts=counts))  # 16/8/4/4: the default run of the other tables
    return rows


def main(argv=None):
    compare_main(__doc__, argv, "table4", "Table 4: token composition (S/P-S #1/P-S #2/C-S)", "S/P-S#1/P-S#2/C-S", runs)


if __name__ == "__main__":
    main()
