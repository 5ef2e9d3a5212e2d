"""The training engine: one loop (``trainer``) for every training stage, which supplies a
``task``; when to log and checkpoint (``schedule``), device-side figures (``meter``), precision,
checkpoints and resume (``checkpointing``), run logs (``runlog``), in-training validation."""
