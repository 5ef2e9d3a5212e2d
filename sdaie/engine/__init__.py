"""Training machinery shared by the training stages: run logs and resumable checkpoints."""
