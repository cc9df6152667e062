"""Baselines beyond the prompt learner's compositions: DualCoOp (model, training, partial labels)."""
