import math

import torch

from sdaie.engine.meter import DeviceMeter


def test_collect_returns_the_sums_with_their_shapes_and_starts_over():
    g = torch.Generator().manual_seed(0)
    steps = [{"loss": torch.rand((), generator=g), "counts": torch.randint(0, 5, (3, 2), generator=g)}
             for _ in range(4)]
    meter = DeviceMeter()
    for values in steps:
        meter.add(values)
    assert meter.steps == 4 and meter.all_finite()
    got = meter.collect()
    assert got["counts"].shape == (3, 2) and got["counts"].dtype == torch.float64
    assert torch.equal(got["counts"], sum(v["counts"] for v in steps).double())
    assert math.isclose(float(got["loss"]), math.fsum(float(v["loss"]) for v in steps), rel_tol=1e-12)
    assert meter.steps == 0 and meter.collect() == {}
    meter.add({"loss": torch.tensor(2.0)})
    assert float(meter.collect()["loss"]) == 2.0  # nothing left over from the last interval


def test_a_non_finite_value_is_seen_until_the_interval_is_collected():
    meter = DeviceMeter()
    meter.add({"loss": torch.tensor(1.0)})
    meter.add({"loss": torch.tensor(float("inf"))})
    meter.add({"loss": torch.tensor(1.0)})
    assert not meter.all_finite()
    meter.collect()
    assert meter.all_finite()
