"""Figure 4 (b): λ2, the weight of the global score in the fused score (Eq. 16), from 0 to 1:
the default run's prompts evaluated at each λ2 (no retraining: λ2 is used at inference only).

    python scripts/tables/figure4b.py --quick               # toy world, one seed, 2 epochs
    python scripts/tables/figure4b.py --world coco --data DATA
"""

from common import Run, World, compare_main, line_figure, ours

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0)
PAPER = {0.65: {"F1": 57.3, "mAP": 66.8}}  # MS-COCO; the figure's other points are not given as numbers


def runs(world: World):
    trained = ours()
    return [Run(f"λ2 = {w}", "HierarchicalCoOp", ("TRAINER.HIPROMPT.LAMBDA_FUSE", w), evaluates=trained,
                paper=PAPER.get(w, {}) if world.paper_dataset == "MS-COCO" else {}) for w in WEIGHTS]


def main(argv=None):
    compare_main(__doc__, argv, "figure4b", "Figure 4 (b): weight λ2 of the global score", "λ2", runs,
                 lambda world, rows: line_figure(world, rows, WEIGHTS, "λ2"))


if __name__ == "__main__":
    main()
