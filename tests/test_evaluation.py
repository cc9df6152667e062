import json

import numpy as np
import pytest
import torch
from yacs.config import CfgNode as CN

from hiprompt.registry import EVALUATOR_REGISTRY
from hiprompt.training.evaluation import MultiLabelEvaluator
from hiprompt.training.metrics import multilabel_metrics


def _cfg(tmp_path) -> CN:
    cfg = CN()
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    return cfg


def test_evaluator_accumulates_batches_prints_and_writes_json(tmp_path, capsys):
    assert EVALUATOR_REGISTRY.get("MultiLabelEvaluator") is MultiLabelEvaluator
    rng = np.random.default_rng(0)
    scores = rng.random((10, 4)).astype(np.float32)  # [N, C]
    labels = (rng.random((10, 4)) < 0.5).astype(np.float32)
    labels[0] = 1
    evaluator = MultiLabelEvaluator(_cfg(tmp_path), classnames=["a", "b", "c", "d"], split="val2017")
    for start in range(0, 10, 4):
        evaluator.process(torch.from_numpy(scores[start : start + 4]), torch.from_numpy(labels[start : start + 4]))
    results = evaluator.evaluate()

    expected = multilabel_metrics(scores, labels)
    assert list(results)[0] == "mAP"
    assert results["mAP"] == pytest.approx(expected["mAP"]) and results["F1@3"] == pytest.approx(expected["F1@3"])
    assert "mAP" in capsys.readouterr().out
    written = json.loads((tmp_path / "run" / "results_val2017.json").read_text())
    assert written["num_images"] == 10 and written["metrics"]["OF1"] == pytest.approx(expected["OF1"])
    assert written["per_class_AP"]["c"] == pytest.approx(expected["per_class_AP"][2])
    assert written["config"] == {"OUTPUT_DIR": str(tmp_path / "run")} and written["checkpoint"] is None

    evaluator.reset()
    with pytest.raises(RuntimeError, match="before any process"):
        evaluator.evaluate()


def test_results_record_the_config_and_the_checkpoint(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.TEST = CN({"METRICS": "peer", "THRESHOLD": 0.25})
    cfg.INPUT = CN({"SIZE": (64, 64)})
    evaluator = MultiLabelEvaluator(cfg, classnames=["a", "b"])
    evaluator.process(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[1, 0], [0, 1]]))
    evaluator.evaluate(checkpoint="run/prompt_learner/model.pth.tar-3")
    written = json.loads((tmp_path / "run" / "results_test.json").read_text())
    assert written["config"] == {"OUTPUT_DIR": str(tmp_path / "run"), "TEST": {"METRICS": "peer", "THRESHOLD": 0.25},
                                 "INPUT": {"SIZE": [64, 64]}}
    assert written["checkpoint"] == "run/prompt_learner/model.pth.tar-3"


def test_evaluator_takes_dassl_lab2cname_and_ignore_mask(tmp_path):
    evaluator = MultiLabelEvaluator(_cfg(tmp_path), lab2cname={1: "dog", 0: "cat"})
    evaluator.process(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[0, 1], [0, 1]]),
                      ignore=torch.tensor([[True, False], [False, False]]))
    with pytest.warns(UserWarning, match="1 of 2 classes have no positive"):
        results = evaluator.evaluate()
    written = json.loads((tmp_path / "run" / "results_test.json").read_text())
    assert list(written["per_class_AP"]) == ["cat", "dog"] and written["per_class_AP"]["cat"] is None
    assert results["mAP"] == pytest.approx(100.0)
