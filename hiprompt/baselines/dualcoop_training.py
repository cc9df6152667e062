"""The trainer logic behind the `DualCoOp` plug-in (`TRAINER.DUALCOOP`).

`TRAIN_DATA images` (as published): the training images of the test set's data set
(`DATASET.TRAIN_SPLIT`, or `DATASET.TRAIN_CSV` for a custom set) with partial labels
(`LABEL_PORTION` kept, the mask in the run folder). The image tower is frozen, so their dense
features are computed once into the feature cache and a step reads a batch of them; unlike
DualCoOp's code there is no random crop or flip (one cached view per image).
`TRAIN_DATA text`: the knowledge folder's sentences, their per-token features taking the
place of image positions, every label known (the data-free setting).
Evaluation is the shared one (`PromptTraining.test`), with the positive margin as the score.
"""

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from hiprompt.baselines.dualcoop import DualCoOpModel
from hiprompt.baselines.partial_labels import MASK_FILE, hide, image_list_digest, run_mask
from hiprompt.cache.image_features import image_features
from hiprompt.clip import build_clip
from hiprompt.config import result_settings
from hiprompt.data.knowledge import content_hash
from hiprompt.data.transforms import TestTransform
from hiprompt.fileio import atomic_write_json
from hiprompt.registry import DATASET_REGISTRY, lookup
from hiprompt.training.prompt_training import PromptTraining, build_optimizer, build_scheduler


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
    """Dassl's trainer hooks for DualCoOp; reuses the shared data, checkpoint and test paths."""

    @property
    def on_images(self) -> bool:
        return self.cfg.TRAINER.DUALCOOP.TRAIN_DATA == "images"

    # -- data -----------------------------------------------------------------------------
    def build_data_loader(self):
        if not self.on_images:
            super().build_data_loader()
            return
        cfg = self.cfg
        self.read_test_vocabulary()
        self.train_images = train_image_set(cfg, self.classnames)
        self.train_targets = None  # [N, C] with -1 = hidden, made with the mask before training
        self.shuffle_generator = torch.Generator()
        self.train_loader_x = DataLoader(
            TensorDataset(torch.arange(len(self.train_images))),
            batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE, shuffle=True, generator=self.shuffle_generator,
        )
        self.train_feats = None

    def train_image_features(self):
        if self.train_feats is None:
            cfg = self.cfg
            transform = TestTransform.from_cfg(cfg)
            self.train_feats = image_features(
                self.clip, self.train_images, transform.build(), transform.key, self.cache_dir / "image_features",
                batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, num_workers=cfg.DATALOADER.NUM_WORKERS,
                device=self.device,
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

    # -- model ----------------------------------------------------------------------------
    def prompt_groups(self) -> dict:
        return {"coarse": [], "fine": []}  # DualCoOp's prompts have no groups

    def build_model(self):
        cfg = self.cfg
        backbone = cfg.MODEL.BACKBONE
        self.clip = build_clip(backbone.NAME, backbone.WEIGHTS, activation=backbone.ACTIVATION,
                               dense_pos_embed=backbone.DENSE_POS_EMBED).to(self.device)
        self.model = DualCoOpModel(self.clip, self.classnames, cfg.TRAINER.DUALCOOP,
                                   cfg.TRAINER.HIPROMPT.LEARNED_NAME).to(self.device)
        params = list(self.model.prompts.parameters())
        optimizer = build_optimizer(params, cfg.OPTIM)
        self.register_model("prompt_learner", self.model.prompts, optimizer, build_scheduler(optimizer, cfg.OPTIM))
        self.text_feats = None

    @cached_property
    def fingerprint(self) -> dict:
        """As `PromptTraining.fingerprint`, with DualCoOp's own settings (neutral for the other
        trainers) and, on images, the training images' list and labels in place of the knowledge."""
        if self.on_images:
            labels = hashlib.sha256(np.ascontiguousarray(self.train_images.labels, dtype=np.float32)).hexdigest()
            trained_on = (f"images {self.train_images.name} {image_list_digest(self.train_images.image_paths)} "
                          f"labels {labels}")
        else:
            trained_on = content_hash(self.cfg.DATASET.TEXT.DIR)
        settings = result_settings(self.cfg)
        settings.update({f"TRAINER.DUALCOOP.{key}": value for key, value in self.cfg.TRAINER.DUALCOOP.items()})
        return {"settings": settings, "knowledge": trained_on, "backbone": self.clip.identity(),
                "classes": list(self.classnames), "groups": self.prompt_groups()}

    # -- training -------------------------------------------------------------------------
    def before_train(self):
        if not self.on_images:
            super().before_train()
            return
        feats = self.train_image_features()
        self.train_targets = self.partial_targets()
        known = self.train_targets != -1
        print(f"training images {self.train_images.name}: {len(self.train_targets)} images, "
              f"{int(known.sum())} of {known.numel()} labels known (mask {Path(self.output_dir) / MASK_FILE}), "
              f"{int((~np.asarray(feats.ok)).sum())} unreadable")
        super(PromptTraining, self).before_train()  # the runtime's: resumes, or refuses other settings
        atomic_write_json(Path(self.output_dir) / "run_info.json", {
            "trainer": self.cfg.TRAINER.NAME,
            "backbone": self.clip.identity(),
            "train_images": {"name": self.train_images.name, "count": len(self.train_targets),
                             "feature_cache": str(feats.folder), "labels_known": int(known.sum()),
                             "labels_total": int(known.numel())},
            "config": json.loads(json.dumps(self.cfg)),
        })

    def forward_backward(self, batch):
        if self.on_images:
            index, = batch
            feats = self.train_image_features()
            order = index.sort().values.numpy()  # memmap reads in file order
            dense = torch.from_numpy(np.asarray(feats.dense_feats[order], dtype=np.float32)).to(self.device)
            targets = self.train_targets[torch.from_numpy(order)].to(self.device)  # [B, C]
            mask = None
        else:
            (_, dense, mask), targets = self.parse_batch_train(batch)  # description tokens as positions
        with self._autocast():
            loss, parts = self.model.loss(dense, targets, mask)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return parts

    def evaluate_text(self, index=None):
        raise NotImplementedError("DualCoOp has no text-side check")
