"""The trainer logic behind the `DualCoOp` plug-in (`TRAINER.DUALCOOP`).

`TRAIN_DATA images` (as published): the training images of the test set's data set
(`DATASET.TRAIN_SPLIT`, or `DATASET.TRAIN_CSV` for a custom set) with partial labels
(`LABEL_PORTION` kept, the mask in the run folder). The image tower is frozen, so their dense
features are computed once into the feature cache and a step reads a batch of them; unlike
DualCoOp's code there is no random crop or flip (one cached view per image).
`TRAIN_DATA text`: the knowledge folder's sentences, their per-token features taking the
place of image positions, every label known (the data-free setting).
Evaluation is the shared one (`PromptTraining.test`), with the positive margin as the score.
One class for each: `DualCoOpTraining` (text) and `DualCoOpImageTraining` (images); the
plug-in `trainers/dualcoop.py` picks one by TRAIN_DATA.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from hiprompt.baselines.dualcoop import DualCoOpModel
from hiprompt.baselines.partial_labels import MASK_FILE, hide, image_list_digest, run_mask
from hiprompt.cache.image_features import image_features
from hiprompt.data.image_dataset import ImageFeatureDataset
from hiprompt.registry import DATASET_REGISTRY, lookup
from hiprompt.training.build import build_backbone, build_optimizer, build_scheduler, build_test_transform
from hiprompt.training.checkpoint import PROMPTS_MODEL
from hiprompt.training.prompt_training import PromptTraining


def train_image_set(cfg, classnames):
    """The labelled training images named by DATASET.TRAIN_SPLIT / DATASET.TRAIN_CSV."""
    dataset = cfg.DATASET
    if not (dataset.TRAIN_SPLIT or dataset.TRAIN_CSV):
        raise ValueError("DualCoOp with TRAINER.DUALCOOP.TRAIN_DATA images needs training images: set "
                         "DATASET.TRAIN_SPLIT (COCO: train2014 or train2017) or DATASET.TRAIN_CSV "
                         "(CustomMultiLabel: a CSV of image,labels under DATASET.ROOT)")
    train_cfg = cfg.clone()
    train_cfg.defrost()
    if dataset.TRAIN_SPLIT:
        train_cfg.DATASET.TEST_SPLIT = dataset.TRAIN_SPLIT
    if dataset.TRAIN_CSV:
        train_cfg.DATASET.CSV = dataset.TRAIN_CSV
    image_set = lookup(DATASET_REGISTRY, dataset.NAME, "DATASET.NAME")(train_cfg).test
    if list(image_set.classnames) != list(classnames):
        raise ValueError(f"the training images {image_set.name} have other classes than the test set "
                         f"{dataset.NAME}: {list(image_set.classnames)[:5]}... against {list(classnames)[:5]}...")
    return image_set


class DualCoOpTraining(PromptTraining):
    """Dassl's trainer hooks for DualCoOp trained on the knowledge folder's text (`TRAIN_DATA
    text`); the data, checkpoint and test paths are the shared ones."""

    def prompt_groups(self) -> dict:
        return {"coarse": [], "fine": []}  # DualCoOp's prompts have no groups

    def build_model(self):
        cfg = self.cfg
        self.clip = build_backbone(cfg).to(self.device)
        self.model = DualCoOpModel(self.clip, self.classnames, cfg.TRAINER.DUALCOOP,
                                   cfg.TRAINER.HIPROMPT.LEARNED_NAME).to(self.device)
        optimizer = build_optimizer(list(self.model.prompts.parameters()), cfg.OPTIM)
        self.register_model(PROMPTS_MODEL, self.model.prompts, optimizer, build_scheduler(optimizer, cfg.OPTIM))
        self.text_feats = None

    def fingerprint_settings(self) -> dict:
        """The shared settings and DualCoOp's own (neutral for the other trainers)."""
        return {**super().fingerprint_settings(),
                **{f"TRAINER.DUALCOOP.{key}": value for key, value in self.cfg.TRAINER.DUALCOOP.items()}}

    def training_batch(self, batch):
        """(positions [B, L, D], targets [B, C], mask [B, L] or None): a sentence's per-token
        features stand in for an image's positions, every label known."""
        (_, tokens, mask), targets = self.parse_batch_train(batch)
        return tokens, targets, mask

    def forward_backward(self, batch):
        dense, targets, mask = self.training_batch(batch)
        with self._autocast():
            loss, parts = self.model.loss(dense, targets, mask)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return parts


class DualCoOpImageTraining(DualCoOpTraining):
    """DualCoOp as published (`TRAIN_DATA images`): the training images' cached dense
    features with partial labels (the run's mask hides the rest)."""

    def build_data_loader(self):
        cfg = self.cfg
        self.read_test_vocabulary()
        self.train_images = train_image_set(cfg, self.classnames)
        self.train_targets = None  # [N, C] with -1 = hidden, made with the mask before training
        self.train_feats = None
        self.train_loader_x = self.shuffled_loader(torch.arange(len(self.train_images)))

    def train_image_features(self):
        if self.train_feats is None:
            cfg = self.cfg
            self.train_feats = image_features(
                self.clip, ImageFeatureDataset.for_test(self.train_images, build_test_transform(cfg)),
                self.cache_dir / "image_features", batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
                num_workers=cfg.DATALOADER.NUM_WORKERS, device=self.device,
            )
        return self.train_feats

    def partial_targets(self) -> torch.Tensor:
        """[N, C] training targets: the labels with the run's mask applied (-1 = hidden); nothing
        known of an unreadable image or of an entry no metric may count (`ignore`)."""
        cfg = self.cfg
        labels = np.asarray(self.train_images.labels, dtype=np.float32)  # [N, C]
        known = run_mask(self.output_dir, labels, self.train_images.image_paths,
                         cfg.TRAINER.DUALCOOP.LABEL_PORTION, max(cfg.SEED, 0))
        known = known & np.asarray(self.train_image_features().ok)[:, None]
        if self.train_images.ignore is not None:
            known = known & ~np.asarray(self.train_images.ignore, dtype=bool)
        return torch.from_numpy(hide(labels, known))

    def trained_on(self) -> str:
        """The training images' list and labels, in place of the knowledge folder."""
        labels = hashlib.sha256(np.ascontiguousarray(self.train_images.labels, dtype=np.float32)).hexdigest()
        return (f"images {self.train_images.name} {image_list_digest(self.train_images.image_paths)} labels {labels} "
                f"features {self.clip.image_identity()}")

    def prepare_training_data(self):
        feats = self.train_image_features()
        self.train_targets = self.partial_targets()
        known = self.train_targets != -1
        print(f"training images {self.train_images.name}: {len(self.train_targets)} images, "
              f"{int(known.sum())} of {known.numel()} labels known (mask {Path(self.output_dir) / MASK_FILE}), "
              f"{int((~np.asarray(feats.ok)).sum())} unreadable")

    def run_info(self) -> dict:
        known = self.train_targets != -1
        return {
            "trainer": self.cfg.TRAINER.NAME,
            "backbone": self.clip.identity(),
            "train_images": {"name": self.train_images.name, "count": len(self.train_targets),
                             "feature_cache": str(self.train_image_features().folder),
                             "labels_known": int(known.sum()), "labels_total": int(known.numel())},
            "config": json.loads(json.dumps(self.cfg)),
        }

    def training_batch(self, batch):
        index, = batch
        order = index.sort().values.numpy()  # memmap reads in file order
        dense = torch.from_numpy(np.asarray(self.train_image_features().dense_feats[order], dtype=np.float32))
        targets = self.train_targets[torch.from_numpy(order)]  # [B, C]
        return dense.to(self.device), targets.to(self.device), None
