"""Training and evaluation: the trainers' shared logic, the runtime, checkpoints, metrics, summaries."""
