"""Both progress units against the rules the two training stages wrote out by hand before."""

import pytest

from sdaie.engine.schedule import Schedule


def test_step_schedule_is_the_pretext_cadence():
    total, log_every, ckpt_every = 23, 5, 7
    s = Schedule.by_steps(total, log_every, ckpt_every)
    for step in range(1, total + 1):
        assert s.log_due(step) == (step % log_every == 0 or step == total), step
        assert s.checkpoint_due(step) == (step % ckpt_every == 0 or step == total), step
        assert s.progress(step) == step and s.round_of(step) == 0
    assert s.start_step(12) == 12 and s.round_end(0) == total
    assert s.checkpoint_name(400) == "step_00000400.pt" and s.resumed_phrase == "at step"


def test_epoch_schedule_is_the_binary_cadence():
    epochs, per_epoch, log_every = 4, 7, 3
    s = Schedule.by_epochs(epochs, per_epoch, log_every)
    step = 0
    for epoch in range(epochs):
        for i in range(1, per_epoch + 1):  # as the binary loop counted: i within the epoch
            step += 1
            assert s.round_of(step) == epoch and s.step_in_round(step) == i
            assert s.log_due(step) == (i % log_every == 0 or i == per_epoch), step
            assert s.checkpoint_due(step) == (i == per_epoch), step
        assert s.progress(step) == epoch + 1 and s.round_end(epoch) == step
    assert s.start_step(2) == 2 * per_epoch
    assert s.checkpoint_name(3) == "epoch_003.pt" and s.resumed_phrase == "after epoch"


def test_schedule_refuses_unknown_units_and_cadences():
    with pytest.raises(ValueError, match="unit"):
        Schedule("batch", 1, 10, 1)
    with pytest.raises(ValueError, match="log_every"):
        Schedule.by_steps(10, 0, 5)
