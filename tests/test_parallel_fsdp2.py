"""FSDP2 (``fully_shard``) on a fake process group, measured by torch's own
``FSDPMemTracker``, against vramplan's FSDP terms (world sizes 2 and 4).

The tracker attributes every tensor FSDP2 allocates to a category (sharded/unsharded
parameters, gradients, all-gather and reduce-scatter buffers, optimizer states). The
fake process group (``torch.testing._internal.distributed.fake_pg``) lets one CPU
process act as rank 0 of N without communicating.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed._tools.fsdp2_mem_tracker")

from vramplan.parallel import MIXED_ADAM, ParallelLayout, RankParams, shard_model_states  # noqa: E402

HIDDEN, LAYERS, MLP_RATIO = 256, 4, 4


def _by_category(snapshot: dict) -> dict:
    """The one device's bytes by category name (``SHARDED_PARAM``, ``OPT``...)."""
    (per_device,) = snapshot.values()
    return {str(k).split(".")[-1]: v for k, v in per_device.items()}


def _measure(world_size: int) -> tuple[dict, dict, int, int]:
    """Run two steps of an FSDP2 MLP stack on rank 0 of ``world_size``; return the
    tracker's breakdown at the peak and after backward, the parameter count and the
    parameters of one block."""
    import torch.distributed as dist
    from torch import nn
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.testing._internal.distributed.fake_pg import FakeStore

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.Linear(HIDDEN, MLP_RATIO * HIDDEN, bias=False)
            self.down = nn.Linear(MLP_RATIO * HIDDEN, HIDDEN, bias=False)

        def forward(self, x):
            return x + self.down(torch.relu(self.up(x)))

    dist.init_process_group("fake", rank=0, world_size=world_size, store=FakeStore())
    try:
        mesh = init_device_mesh("cpu", (world_size,))
        torch.manual_seed(0)
        model = nn.Sequential(*[Block() for _ in range(LAYERS)])
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16)  # reduce_dtype defaults to param_dtype
        for block in model:
            fully_shard(block, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
        tracker = FSDPMemTracker(mod=model, optm=opt)
        x = torch.randn(8, HIDDEN)
        with tracker:
            for step in range(2):
                model(x).sum().backward()
                if step == 1:
                    after_backward = _by_category(tracker.get_tracker_snapshot())
                opt.step()
                opt.zero_grad()
                if step == 0:
                    tracker.reset_mod_stats()
            peak = _by_category(tracker.get_tracker_snapshot("peak"))
        params = sum(p.numel() for p in model.parameters())
        block = sum(p.numel() for p in model[0].parameters())
    finally:
        dist.destroy_process_group()
    return peak, after_backward, params, block


@pytest.mark.parametrize("world_size", [2, 4])
def test_fsdp2_terms_match_the_memory_tracker(world_size):
    peak, after_backward, params, block = _measure(world_size)
    rp = RankParams(dense=params, experts=0, largest_module=0, small=0)
    ours = shard_model_states(recipe=MIXED_ADAM, params=rp, layout=ParallelLayout(dp=world_size, fsdp="fsdp2"),
                              layer_params=block, root_params=0)
    # Sharded fp32 parameters: the master copy, 4 B x P / N.
    assert peak["SHARDED_PARAM"] == ours.weights_bytes
    # Sharded fp32 gradients once backward is done: 4 B x P / N.
    assert after_backward["SHARDED_GRAD"] == ours.gradients_bytes
    # Adam's exp_avg + exp_avg_sq in fp32 (8 B x P / N); torch adds a 4-byte step
    # counter per parameter tensor, which we do not count.
    assert peak["OPT"] - 4 * 2 * LAYERS == ours.optimizer_bytes
    # The unit in compute plus the prefetched unit, both gathered in bf16 (root has no
    # parameters of its own here): unsharded parameters + all-gather buffer.
    assert peak["UNSHARDED_PARAM"] + peak["ALL_GATHER"] == ours.gathered_params_bytes
    # One unit's bf16 gradients waiting to be reduce-scattered.
    assert peak["REDUCE_SCATTER"] == ours.unsharded_grads_bytes
