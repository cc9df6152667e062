"""The method: prompt learner, prefix-tree encoding, scores, losses and the prompted CLIP."""
