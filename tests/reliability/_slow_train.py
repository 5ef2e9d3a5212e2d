"""Test helper (not collected): ``backbone_train`` with a pause after every optimiser step.

    python _slow_train.py SECONDS [backbone_train arguments...]

The pause gives the SIGKILL / SIGTERM tests a window between two checkpoints; it changes no
numbers. With ``SDAIE_TEST_PID_DIR`` set, each process writes its pid to
``<dir>/rank<RANK>.attempt<TORCHELASTIC_RESTART_COUNT>`` so a test can kill one rank of a
torchrun job. Exits with the stage's code (143 after a SIGTERM stop).
"""

import os
import sys
import time
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook


def main() -> int:
    delay = float(sys.argv[1])
    torch.set_num_threads(1)
    pid_dir = os.environ.get("SDAIE_TEST_PID_DIR")
    if pid_dir:
        name = (f"rank{os.environ.get('RANK', '0')}."
                f"attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}")
        Path(pid_dir, name).write_text(str(os.getpid()))
    register_optimizer_step_post_hook(lambda optimizer, args, kwargs: time.sleep(delay))
    from sdaie.stages.backbone_train import main as train

    return train(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
