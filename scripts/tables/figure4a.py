"""Figure 4 (a): the number of context tokens (split N/2, N/4, N/8, rest as the default).

    python scripts/tables/figure4a.py --quick               # toy world, one seed, 2 epochs
    python scripts/tables/figure4a.py --world coco --data DATA
"""

from common import (World, line_figure, measured_rows, ours, parse_args, run_all, split_tokens,
                    write_outputs)

COUNTS = (8, 16, 32, 64)
PAPER = {32: {"F1": 57.3, "mAP": 66.8}}  # MS-COCO; the figure's other points are not given as numbers


def runs(world: World):
    rows = []
    for n in COUNTS:
        paper = PAPER.get(n, {}) if world.paper_dataset == "MS-COCO" else {}
        rows.append(ours(f"{n} tokens ({'/'.join(map(str, split_tokens(n)))})", paper, counts=split_tokens(n)))
    return rows


def main(argv=None):
    world = World(parse_args(__doc__, argv))
    rows = runs(world)
    run_all(world, rows)
    write_outputs(world, "figure4a", "Figure 4 (a): number of context tokens",
                  ["tokens", "paper F1", "paper mAP", "F1@3", "mAP", "seeds"],
                  measured_rows(world, rows), line_figure(world, rows, COUNTS, "context tokens"))


if __name__ == "__main__":
    main()
