"""Look inside trained runs of the method: each branch scored on its own, with learned and
hand-crafted prompts, the dense branch under other temperatures and image features, the
per-class AP differences between prompt sets, and per-class score offsets (issue 24).

    python scripts/branch_diagnostics.py RUN_SEED_DIR [RUN_SEED_DIR ...] [--data data/toy80-val]
    python scripts/branch_diagnostics.py RUN --data DATA --tau-image 0.025 0.05 0.1 --dense-pos-embed both

RUN_SEED_DIR is a finished run folder (`.../seed1`) of HierarchicalCoOp (or another trainer
of `PromptedCLIP`) on a CustomMultiLabel test set; DATA another such folder with the same
classes (default: the run's own DATASET.ROOT), read with the run's DATASET.CSV and
DATASET.CLASSNAMES_FILE. Nothing is written beside the feature caches. Prints, for each run, one table: rows are the
scores (global branch, dense branch, fused at the run's λ2), columns the prompts scored with
(the run's learned global prompts, its learned local prompts, the hand-crafted prompt).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate
from yacs.config import CfgNode as CN

from hiprompt.cache.image_features import image_features
from hiprompt.cache.text_features import text_features
from hiprompt.data.custom import read_custom_csv
from hiprompt.data.image_dataset import ImageFeatureDataset
from hiprompt.data.knowledge import KnowledgeText
from hiprompt.model.method import PromptedCLIP
from hiprompt.model.scoring import fuse, global_scores, local_scores
from hiprompt.paths import cache_root
from hiprompt.training.build import build_backbone, build_test_transform
from hiprompt.training.checkpoint import PROMPTS_MODEL, load_checkpoint
from hiprompt.training.metrics import multilabel_metrics


def features(clip, cfg, image_set, cache_dir):
    feats = image_features(clip, ImageFeatureDataset.for_test(image_set, build_test_transform(cfg)),
                           cache_dir / "image_features", batch_size=64, progress=False)
    ok = np.asarray(feats.ok, dtype=bool)
    return (torch.tensor(np.asarray(feats.global_feats)).float()[ok],  # [N, D]
            torch.tensor(np.asarray(feats.dense_feats)).float()[ok],  # [N, P, D]
            np.asarray(image_set.labels)[ok])  # [N, C]


def text_side(model, corpus, feats, prompts):
    """Rows (branch, prompts, mAP over the training sentences' labels) and the centroid cosines
    of text and image features: how well each prompt set fits the text it was trained on.
    corpus: the run's TextCorpus; feats: its description features."""
    index = torch.arange(len(corpus.texts))
    scores = {name: ([], []) for name in prompts}
    eot_sum, token_sum, token_count = 0, 0, 0
    for eot, tokens, mask in feats.batches(index):
        for name, emb in prompts.items():
            score_g, score_l = model.text_scores(eot, tokens, mask, (emb, emb))
            scores[name][0].append(score_g)
            scores[name][1].append(score_l)
        eot_sum = eot_sum + torch.nn.functional.normalize(eot, dim=-1).sum(0)
        token_sum = token_sum + (torch.nn.functional.normalize(tokens, dim=-1) * mask[..., None]).sum((0, 1))
        token_count += int(mask.sum())
    rows = []
    for name, (score_g, score_l) in scores.items():
        for branch, values in (("text: EOT feature", score_g), ("text: token features", score_l)):
            rows.append((branch, name, score(torch.cat(values), corpus.labels)))
    return rows, eot_sum / len(corpus.texts), token_sum / token_count


def fresh_model(clip, classnames, info, hp, cfg):
    """The run's model at its random start (the seed's draw, as training starts)."""
    torch.manual_seed(max(cfg.SEED, 0))
    return PromptedCLIP(clip, classnames, info["groups"], hp)


def gradient_shares(model, corpus, feats, batch_size: int, batches: int = 8) -> dict:
    """Gradient norm of each term of the training loss (`PromptedCLIP.loss_terms`, the order
    term weighted by λ1 as in the loss) with respect to all prompt parameters, over the first
    `batches` batches of `batch_size` of the corpus (a fixed shuffle), and, with an order term,
    the cosine between its gradient and the ranking terms' (per batch)."""
    params = [p for p in model.prompts.parameters() if p.requires_grad]
    order = torch.randperm(len(corpus.texts), generator=torch.Generator().manual_seed(0))
    shares = {}
    with torch.enable_grad():
        for start in range(0, min(batches * batch_size, len(order)), batch_size):
            index = order[start:start + batch_size]
            eot, tokens, mask = feats.batch(index)
            terms = model.loss_terms(eot, tokens, mask, torch.as_tensor(corpus.labels[index.numpy()]))
            if "order" in terms:
                terms["λ1·order"] = model.hp.LAMBDA_ORDER * terms.pop("order")
            grads = {}
            for name, term in terms.items():
                grad = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
                grads[name] = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                         for g, p in zip(grad, params)])
                shares.setdefault(name, []).append((term.item(), grads[name].norm().item()))
            if "λ1·order" in grads:
                rank = sum(g for name, g in grads.items() if name.startswith("rank"))
                shares.setdefault("cos(order, rank)", []).append(
                    float(torch.nn.functional.cosine_similarity(grads["λ1·order"], rank, dim=0)))
    return shares


def scene_mistakes(scores: np.ndarray, labels: np.ndarray, classnames, data: Path, world_name: str) -> str:
    """Of the top-3 labels that are wrong, the shares whose class belongs to the image's scene
    (against chance), shares a colour or a texture with its objects; the most frequent ones."""
    from hiprompt.toyworld.worlds import get_world

    world = get_world(world_name)
    records = [json.loads(line) for line in (data / "captions.jsonl").read_text().splitlines() if line.strip()]
    info = {i.name: i for i in world.classes}
    wrong = in_scene = same_colour = same_texture = 0
    absent_in_scene = []  # per image: the share of its absent classes that belong to its scene (chance)
    counts = np.zeros(len(classnames), dtype=int)
    for row, label, record in zip(scores, labels, records):
        colours = {o["colour"] for o in record["objects"]}
        textures = {o["texture"] for o in record["objects"]}
        absent = [c for c in range(len(classnames)) if not label[c]]
        absent_in_scene.append(np.mean([record["scene"] in info[classnames[c]].scenes for c in absent]))
        for c in np.argsort(-row, kind="stable")[:3]:
            if not label[c]:
                wrong += 1
                counts[c] += 1
                in_scene += record["scene"] in info[classnames[c]].scenes
                same_colour += bool(colours & set(info[classnames[c]].colours))
                same_texture += bool(textures & set(info[classnames[c]].textures))
    hubs = np.argsort(-counts)[:5]
    share = lambda n: f"{100 * n / max(wrong, 1):.1f}%"  # noqa: E731
    return (f"{wrong} wrong top-3 labels: {share(in_scene)} classes of the image's scene (chance "
            f"{100 * np.mean(absent_in_scene):.1f}%), {share(same_colour)} "
            f"a class whose colours include one of the image's, {share(same_texture)} whose textures include one "
            f"of the image's; most frequent: " + ", ".join(f"{classnames[c]} {counts[c]}" for c in hubs))


def score(scores: torch.Tensor, labels: np.ndarray) -> dict:
    metrics = multilabel_metrics(scores.numpy(), labels, topk=3)
    return {"mAP": metrics["mAP"], "F1@3": metrics["F1@3"], "per_class_AP": np.asarray(metrics["per_class_AP"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (…/seed<S>)")
    parser.add_argument("--data", type=Path, default=None, help="CustomMultiLabel test set folder (default: the run's)")
    parser.add_argument("--tau-image", type=float, nargs="*", default=[], help="other τ of the dense branch to try")
    parser.add_argument("--dense-pos-embed", choices=("run", "both"), default="run",
                        help="both: also score dense features made with the other DENSE_POS_EMBED")
    parser.add_argument("--worst", type=int, default=8, help="classes listed with the largest AP losses")
    parser.add_argument("--world", default="", help="a toy world (toy, toy80): also where top-3 mistakes fall "
                        "relative to the image's scene (DATA/captions.jsonl)")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: the cache root)")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    cache_dir = args.cache or cache_root()

    for folder in args.runs:
        info = json.loads((folder / "run_info.json").read_text())
        cfg = CN(info["config"], new_allowed=True)
        hp = cfg.TRAINER.HIPROMPT
        data = args.data or Path(cfg.DATASET.ROOT)
        names = cfg.DATASET.CLASSNAMES_FILE
        image_set = read_custom_csv(data / cfg.DATASET.CSV, data / names if names else None)
        clip = build_backbone(cfg).eval()
        model = PromptedCLIP(clip, image_set.classnames, info["groups"], hp)
        model.prompts.load_state_dict(load_checkpoint(folder, PROMPTS_MODEL)["state_dict"])
        learned_global, learned_local = model.prompts.class_embeddings()  # [C, D] each
        hand = model.handcrafted  # [C, D]
        prompts = {"learned global": learned_global, "learned local": learned_local, "hand-crafted": hand}
        feature_sets = {f"DENSE_POS_EMBED {cfg.MODEL.BACKBONE.DENSE_POS_EMBED}": features(clip, cfg, image_set,
                                                                                           cache_dir)}
        if args.dense_pos_embed == "both":
            other = cfg.clone()
            other.defrost()
            other.MODEL.BACKBONE.DENSE_POS_EMBED = not cfg.MODEL.BACKBONE.DENSE_POS_EMBED
            feature_sets[f"DENSE_POS_EMBED {other.MODEL.BACKBONE.DENSE_POS_EMBED}"] = features(
                build_backbone(other).eval(), other, image_set, cache_dir)

        print(f"\n== {folder} (λ2 {hp.LAMBDA_FUSE}, τ_image {hp.TAU_IMAGE}, τ_text {hp.TAU_TEXT})")
        rows, results = [], {}
        global_feats, _, labels = next(iter(feature_sets.values()))
        for name, emb in prompts.items():
            results[("global", name)] = score(global_scores(global_feats, emb), labels)
        for feature_name, (_, dense_feats, _) in feature_sets.items():
            for tau in [hp.TAU_IMAGE, *args.tau_image]:
                for name, emb in prompts.items():
                    results[(f"dense τ {tau:g}, {feature_name}", name)] = score(
                        local_scores(dense_feats, emb, tau), labels)
        dense_feats = next(iter(feature_sets.values()))[1]
        fused = {
            "fused: learned global + learned local": (learned_global, learned_local),
            "fused: learned global + global prompts on dense": (learned_global, learned_global),
            "fused: hand-crafted both": (hand, hand),
            "fused: learned global + hand-crafted dense": (learned_global, hand),
        }
        for name, (emb_g, emb_l) in fused.items():
            results[(name, "")] = score(fuse(global_scores(global_feats, emb_g),
                                             local_scores(dense_feats, emb_l, hp.TAU_IMAGE), hp.LAMBDA_FUSE), labels)
        corpus = KnowledgeText(cfg, image_set.classnames).corpus
        descriptions = text_features(clip, corpus.texts, cache_dir, progress=False)
        text_rows, eot_mean, token_mean = text_side(model, corpus, descriptions, prompts)
        for branch, name, value in text_rows:
            results[(branch, name)] = value
        for (branch, name), value in results.items():
            rows.append([branch, name, f"{value['mAP']:.2f}", f"{value['F1@3']:.2f}"])
        print(tabulate(rows, headers=["scores", "prompts", "mAP", "F1@3"]))

        image_global_mean = torch.nn.functional.normalize(global_feats, dim=-1).mean(0)
        image_dense_mean = torch.nn.functional.normalize(dense_feats, dim=-1).mean((0, 1))
        cos = torch.nn.functional.cosine_similarity
        print(f"centroid cosines (1 = the modalities' features sit around the same point): EOT-global image "
              f"{cos(eot_mean, image_global_mean, dim=0):.3f}, tokens-dense image "
              f"{cos(token_mean, image_dense_mean, dim=0):.3f}, "
              f"tokens-EOT {cos(token_mean, eot_mean, dim=0):.3f}, dense-global image "
              f"{cos(image_dense_mean, image_global_mean, dim=0):.3f}")
        start = fresh_model(clip, image_set.classnames, info, hp, cfg)
        for state, net in (("trained", model), ("at the start", start)):
            shares = gradient_shares(net, corpus, descriptions, cfg.DATALOADER.TRAIN_X.BATCH_SIZE)
            cosines = shares.pop("cos(order, rank)", None)
            cosine = f"; cos(order, rank) {np.mean(cosines):+.3f}" if cosines else ""
            print(f"gradients {state}: " + ", ".join(
                f"{name} loss {np.mean([v for v, _ in values]):.3f} grad {np.mean([g for _, g in values]):.4f}"
                for name, values in shares.items()) + cosine)
        dense_key = f"dense τ {hp.TAU_IMAGE:g}, {next(iter(feature_sets))}"
        diff = (results[(dense_key, "learned local")]["per_class_AP"]
                - results[(dense_key, "hand-crafted")]["per_class_AP"])
        order = np.argsort(diff)
        print(f"dense branch, learned local − hand-crafted AP per class: mean {np.nanmean(diff):+.2f}, "
              f"{int((diff < 0).sum())} of {len(diff)} classes lower; worst: "
              + ", ".join(f"{image_set.classnames[i]} {diff[i]:+.1f}" for i in order[:args.worst]))

        # per-class offsets: the mean score of a class over all images, minus the mean over
        # classes; a class whose scores all sit high takes top-3 places from others (F1@3)
        for name, emb_l in (("learned", learned_local), ("hand-crafted", hand)):
            emb_g = learned_global if name == "learned" else hand
            fused_scores = fuse(global_scores(global_feats, emb_g), local_scores(dense_feats, emb_l, hp.TAU_IMAGE),
                                hp.LAMBDA_FUSE).numpy()  # [N, C]
            offsets = fused_scores.mean(axis=0) - fused_scores.mean()
            spread = fused_scores.std(axis=0).mean()
            centred = torch.tensor(fused_scores - fused_scores.mean(axis=0, keepdims=True))
            centred_metrics = score(centred, labels)
            standardised = torch.tensor((fused_scores - fused_scores.mean(axis=0)) / fused_scores.std(axis=0))
            std_metrics = score(standardised, labels)
            if args.world:
                print(f"{name}: " + scene_mistakes(fused_scores, labels, image_set.classnames, data, args.world))
            print(f"{name}: class offsets std {offsets.std():.4f} against a within-class std {spread:.4f}; "
                  f"F1@3 with each class's mean removed {centred_metrics['F1@3']:.2f}, standardised "
                  f"{std_metrics['F1@3']:.2f} (mAP unchanged by either)")


if __name__ == "__main__":
    main()
