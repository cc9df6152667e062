"""The trainer logic behind the `trainers/` plug-ins, shared by the built-in runtime and Dassl.

Data: the image test set named by `DATASET.NAME` and, for learned prompts, the text corpus
of the knowledge folder `DATASET.TEXT.DIR`. Frozen features (descriptions, images) are
computed once and cached (descriptions over DATASET.TEXT.FEATURE_BUDGET_GB: per batch); a
training step encodes only the prompts.
"""

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from hiprompt.cache.image_features import image_features
from hiprompt.cache.text_features import text_features
from hiprompt.config import result_settings, validate_cfg
from hiprompt.data.image_dataset import ImageFeatureDataset
from hiprompt.data.knowledge import check_class_count, content_hash
from hiprompt.fileio import atomic_write_json
from hiprompt.model.method import PromptedCLIP
from hiprompt.paths import cache_root
from hiprompt.registry import DATASET_REGISTRY, lookup
from hiprompt.training import evaluation  # noqa: F401  (registers MultiLabelEvaluator)
from hiprompt.training.build import build_backbone, build_optimizer, build_scheduler, build_test_transform
from hiprompt.training.checkpoint import PROMPTS_MODEL, checkpoint_epoch, saved_epochs
from hiprompt.training.metrics import peer_metrics
from hiprompt.training.protocol import choose_epoch, peer_selection, selection_rows
from hiprompt.training.runtime import prompt_autocast


class PromptTraining:
    """Mixin implementing Dassl's trainer hooks for prompts learned on text.

    Subclasses (the plug-ins) combine it with `hiprompt.training.runtime.TrainerBase`, which
    provides what `TrainerRuntime` lists; it provides `fingerprint`, which the runtime's
    checkpointing needs (`hiprompt.training.checkpoint.CheckpointHost`).
    """

    def check_cfg(self, cfg):
        validate_cfg(cfg)

    @property
    def cache_dir(self) -> Path:
        return Path(self.cfg.CACHE_DIR) if self.cfg.CACHE_DIR else cache_root()

    # -- data -----------------------------------------------------------------------------
    def read_test_vocabulary(self):
        """The test set named by DATASET.NAME and its class names; no loader yet."""
        cfg = self.cfg
        if not cfg.DATASET.NAME:
            raise ValueError("DATASET.NAME is empty: pass --dataset-config-file configs/datasets/<name>.yaml")
        self.dataset = lookup(DATASET_REGISTRY, cfg.DATASET.NAME, "DATASET.NAME")(cfg)
        self.use_classnames(self.dataset.classnames)

    def use_classnames(self, classnames):
        """The class set, as Dassl's hooks expect it; no loader yet."""
        self.classnames = list(classnames)
        self.lab2cname = dict(enumerate(self.classnames))
        self.num_classes = len(self.classnames)
        self.num_source_domains = 1
        self.val_loader = self.test_loader = None
        self.text_set = None
        self.train_loader_x = None

    def build_text_set(self):
        """The training text over the class set: the plug-in named DATASET.TEXT.NAME."""
        text_set = lookup(DATASET_REGISTRY, self.cfg.DATASET.TEXT.NAME, "DATASET.TEXT.NAME")
        return text_set(self.cfg, classnames=self.classnames)

    def build_data_loader(self):
        cfg = self.cfg
        self.read_test_vocabulary()
        if cfg.DATASET.TEXT.DIR:
            check_class_count(self.classnames, f"the test set {cfg.DATASET.NAME} (DATASET.NAME)")
            self.text_set = self.build_text_set()
            self.train_index, self.holdout_index = self._split_corpus(len(self.text_set.corpus.texts))
            labels = torch.from_numpy(self.text_set.corpus.labels)
            self.train_loader_x = self.shuffled_loader(self.train_index, labels[self.train_index])

    def shuffled_loader(self, *tensors) -> DataLoader:
        """Training batches of `tensors`' rows, in an order fixed by (seed, epoch) (`before_epoch`)."""
        self.shuffle_generator = torch.Generator()
        return DataLoader(TensorDataset(*tensors), batch_size=self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE, shuffle=True,
                          generator=self.shuffle_generator)

    def _split_corpus(self, count: int):
        """Indices of training and held-out sentences (HOLDOUT fraction, fixed by SEED); a
        ValueError when no training sentence is left."""
        holdout = self.cfg.DATASET.TEXT.HOLDOUT
        order = torch.randperm(count, generator=torch.Generator().manual_seed(max(self.cfg.SEED, 0)))
        n_holdout = int(round(holdout * count))
        if n_holdout == count:  # (an empty corpus never gets here: it is refused when read)
            raise ValueError(f"DATASET.TEXT.HOLDOUT {holdout:g}: no training sentence is left after holding out "
                             f"{holdout * 100:g}% of {count} sentences ({self.cfg.DATASET.TEXT.DIR}); "
                             "lower DATASET.TEXT.HOLDOUT")
        return order[n_holdout:].sort().values, order[:n_holdout].sort().values

    # -- model ----------------------------------------------------------------------------
    def prompt_groups(self) -> dict:
        return self.text_set.groups if self.text_set is not None else {"coarse": [], "fine": []}

    def build_model(self):
        cfg = self.cfg
        self.clip = build_backbone(cfg).to(self.device)
        self.model = PromptedCLIP(self.clip, self.classnames, self.prompt_groups(), cfg.TRAINER.HIPROMPT).to(self.device)
        params = list(self.model.prompts.parameters())
        optimizer = build_optimizer(params, cfg.OPTIM) if params else None
        scheduler = build_scheduler(optimizer, cfg.OPTIM) if optimizer is not None else None
        self.register_model(PROMPTS_MODEL, self.model.prompts, optimizer, scheduler)
        self.text_feats = None

    def _autocast(self):
        return prompt_autocast(self.cfg.TRAINER.HIPROMPT.PREC, self.device)

    def prompt_embeddings(self):
        """(global [C, D], local [C, D]) float32: the prompt encoder under the PREC autocast,
        the learned context (master weights) staying float32."""
        with self._autocast():
            global_emb, local_emb = self.model.prompts.class_embeddings()
        return global_emb.float(), local_emb.float()

    def description_features(self):
        """The corpus's description features (hiprompt/cache/text_features.py): a memory-mapped
        store, or encoding per batch when the store would exceed DATASET.TEXT.FEATURE_BUDGET_GB."""
        if self.text_feats is None:
            budget = self.cfg.DATASET.TEXT.FEATURE_BUDGET_GB * 1e9
            self.text_feats = text_features(self.clip, self.text_set.corpus.texts, self.cache_dir,
                                            budget_bytes=budget, device=self.device)
        return self.text_feats

    # -- training -------------------------------------------------------------------------
    def before_train(self):
        self.prepare_training_data()
        super().before_train()  # the runtime's: resumes, or refuses a checkpoint of other settings
        atomic_write_json(Path(self.output_dir) / "run_info.json", self.run_info())

    def prepare_training_data(self):
        """Checks there is something to learn, and encodes (or finds) the description features."""
        if self.train_loader_x is None:
            raise ValueError(
                "no text to train on: set DATASET.TEXT.DIR to a knowledge folder made by "
                "`python -m llm_knowledge` (or use --eval-only)"
            )
        if not self.model.prompts.learnable:
            raise ValueError("all context counts are 0 (hand-crafted prompts): nothing to train; use --eval-only")
        self.description_features()
        corpus = self.text_set.corpus
        print(f"text corpus {self.cfg.DATASET.TEXT.DIR}: {len(corpus.texts)} sentences "
              f"({len(self.train_index)} train, {len(self.holdout_index)} held out); lines not "
              f"used: " + ", ".join(f"{reason} {n}" for reason, n in corpus.dropped.items()))

    def trained_on(self):
        """What the prompts learn from, as recorded in the fingerprint: the knowledge folder's
        content hash (None without one)."""
        text_dir = self.cfg.DATASET.TEXT.DIR
        return content_hash(text_dir) if text_dir else None

    def fingerprint_settings(self) -> dict:
        """The settings that shape the learned prompts (hiprompt.config.result_settings)."""
        return result_settings(self.cfg)

    @cached_property
    def fingerprint(self) -> dict:
        """What determines the learned prompts: recorded in every checkpoint, compared on a
        resume and (backbone, classes, groups) on loading for evaluation."""
        return {"settings": self.fingerprint_settings(), "knowledge": self.trained_on(),
                "backbone": self.clip.identity(), "classes": list(self.classnames), "groups": self.prompt_groups()}

    def run_info(self) -> dict:
        """The run folder's run_info.json."""
        corpus = self.text_set.corpus
        return {
            "trainer": self.cfg.TRAINER.NAME,
            "backbone": self.clip.identity(),
            "knowledge_dir": str(self.cfg.DATASET.TEXT.DIR),
            "knowledge_hash": self.fingerprint["knowledge"],
            "sentences": {"train": len(self.train_index), "holdout": len(self.holdout_index),
                          "total": len(corpus.texts), "dropped": corpus.dropped},
            "groups": self.prompt_groups(),
            "config": json.loads(json.dumps(self.cfg)),
        }

    def before_epoch(self):
        # The order of an epoch depends on (seed, epoch) only, so a resumed run matches an
        # uninterrupted one.
        self.shuffle_generator.manual_seed(max(self.cfg.SEED, 0) * 1000 + self.epoch)
        super().before_epoch()

    def parse_batch_train(self, batch):
        index, labels = batch
        eot, tokens, mask = self.description_features().batch(index)  # [B, D], [B, T, D], [B, T]
        return (eot.to(self.device), tokens.to(self.device), mask.to(self.device)), labels.to(self.device)

    def forward_backward(self, batch):
        (eot, tokens, mask), labels = self.parse_batch_train(batch)
        loss, parts = self.model.text_loss(eot, tokens, mask, labels, self.prompt_embeddings())
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return parts

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def class_embeddings(self):
        self.model.eval()
        return self.prompt_embeddings()

    def test_image_features(self):
        """The test set's cached image features (hiprompt/cache/image_features.py)."""
        cfg = self.cfg
        return image_features(
            self.clip, ImageFeatureDataset.for_test(self.dataset.test, build_test_transform(cfg)),
            self.cache_dir / "image_features", batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            num_workers=cfg.DATALOADER.NUM_WORKERS, device=self.device,
        )

    @torch.no_grad()
    def test_scores(self, feats, rows) -> torch.Tensor:
        """[len(rows), C] scores of the test images `rows` (indices into the test set) by the
        prompts in memory."""
        embeddings = self.class_embeddings()
        rows = np.asarray(rows, dtype=np.int64)
        scores = [torch.zeros(0, self.num_classes)]
        chunk = 256
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            global_feats = torch.tensor(np.asarray(feats.global_feats[part]), device=self.device).float()
            dense_feats = torch.tensor(np.asarray(feats.dense_feats[part]), device=self.device).float()
            scores.append(self.model.image_scores(global_feats, dense_feats, embeddings).cpu())
        return torch.cat(scores)

    @torch.no_grad()
    def select_peer_epoch(self, feats) -> dict:
        """TEST.PROTOCOL peer (hiprompt/training/protocol.py): score every saved epoch of the run
        the prompts in memory come from on the peer's selection images by the peers' mAP, and
        load the epoch it keeps. What was done, for the results file."""
        rule = peer_selection(self.cfg.TRAINER.NAME, self.cfg.DATASET.NAME)
        image_set = self.dataset.test
        ok = np.asarray(feats.ok, dtype=bool)
        rows = selection_rows(len(image_set.image_paths), rule.stride)
        rows = rows[ok[rows]]
        record = {"rule": rule.describe(), "peer": rule.peer, "stride": rule.stride,
                  "drop_unannotated": rule.drop_unannotated, "images": int(len(rows)), "epoch_mAP": {}}
        if self.prompts_from is None:  # nothing trained or loaded (hand-crafted prompts): nothing to choose
            return record
        directory = Path(self.prompts_from).parent.parent
        epochs = saved_epochs(directory, PROMPTS_MODEL)
        missing = sorted(set(range(1, epochs[-1] + 1)) - set(epochs))
        if missing:
            raise ValueError(f"TEST.PROTOCOL peer picks among every epoch's prompts, but {directory / PROMPTS_MODEL} "
                             f"lacks the checkpoints of epochs {missing}: train with TRAIN.CHECKPOINT_FREQ 1 "
                             "(the default)")
        labels = image_set.labels[rows]
        ignore = image_set.ignore[rows] if image_set.ignore is not None else None
        for epoch in epochs:
            self.load_model(str(directory), epoch=epoch)
            scores = self.test_scores(feats, rows).numpy()
            record["epoch_mAP"][epoch] = peer_metrics(scores, labels, ignore=ignore)["mAP"]
        chosen = choose_epoch(record["epoch_mAP"])
        self.load_model(str(directory), epoch=chosen)
        return record

    @torch.no_grad()
    def test(self, split=None):  # Dassl's signature (its loop passes split="val"); the test set here
        image_set = self.dataset.test
        feats = self.test_image_features()
        protocol = self.cfg.TEST.PROTOCOL
        selection = self.select_peer_epoch(feats) if protocol == "peer" else None
        scores = self.test_scores(feats, range(len(image_set.image_paths)))  # [N, C]
        ok = torch.as_tensor(np.asarray(feats.ok), dtype=torch.bool)
        labels = torch.as_tensor(image_set.labels)
        ignore = torch.as_tensor(image_set.ignore)[ok] if image_set.ignore is not None else None
        self.evaluator.reset()
        self.evaluator.process(scores[ok], labels[ok], ignore)
        return self.evaluator.evaluate(unreadable=feats.corrupt_paths, checkpoint=self.prompts_from,
                                       protocol=protocol, epoch=checkpoint_epoch(self.prompts_from),
                                       selection=selection)
