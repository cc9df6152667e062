"""Figure 4 (a): the number of context tokens (split N/2, N/4, N/8, rest as the default).

    python scripts/tables/figure4a.py --quick               # toy world, one seed, 2 epochs
    python scripts/tables/figure4a.py --world coco --data DATA
"""

from common import World, compare_main, line_figure, ours, split_tokens

COUNTS = (8, 16, 32, 64)
PAPER = {32: {"F1": 57.3, "mAP": 66.8}}  # MS-COCO; the figure's other points are not given as numbers


def runs(world: World):
    rows = []
    for n in COUNTS:
        paper = PAPER.get(n, {}) if world.paper_dataset == "MS-COCO" else {}
        rows.append(ours(f"{n} tokens ({'/'.join(map(str, split_tokens(n)))})", paper, counts=split_tokens(n)))
    return rows


def main(argv=None):
    compare_main(__doc__, argv, "figure4a", "Figure 4 (a): number of context tokens", "tokens", runs,
                 lambda world, rows: line_figure(world, rows, COUNTS, "context tokens"))


if __name__ == "__main__":
    main()
