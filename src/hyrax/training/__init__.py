"""Training: the loop (on PyTorch Ignite), checkpoints, tracking and distribution."""
