import pytest
import torch

from sdaie import distributed as dist_mod
from sdaie.distributed import all_gather_objects, all_reduce_sum, distributed, env_ranks


def test_env_ranks_reads_torchrun_variables():
    assert env_ranks({}) == (0, 1, 0)
    assert env_ranks({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (5, 8, 1)
    with pytest.raises(RuntimeError, match="inconsistent"):
        env_ranks({"RANK": "8", "WORLD_SIZE": "8"})
    with pytest.raises(RuntimeError, match="malformed"):
        env_ranks({"WORLD_SIZE": "two"})


def test_single_process_without_torchrun(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    with distributed("cpu") as info:
        assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
        assert not torch.distributed.is_initialized()
        t = torch.tensor([1.0, 3.0])
        assert torch.equal(all_reduce_sum(t), t)
        assert all_gather_objects({"a": 1}) == [{"a": 1}]


def test_one_rank_gloo_group_is_created_and_destroyed(monkeypatch):
    # WORLD_SIZE=1 runs without a group; a 2-rank gloo job is exercised through torchrun in
    # tests/stages/test_backbone_train.py. Here: the group set-up path itself, with world size 1.
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29561")
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    try:
        assert torch.equal(all_reduce_sum(torch.tensor([2.0])), torch.tensor([2.0]))
        assert all_gather_objects([1]) == [[1]]
    finally:
        dist_mod.cleanup()
    assert not torch.distributed.is_initialized()
