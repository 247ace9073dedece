"""Overheads: each default against the documentation it cites, and user overrides."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramplan.errors import InputError
from vramplan.inference import InferenceSetup, estimate_inference
from vramplan.memory.overhead import (
    NCCL_LL128_BUFFSIZE_BYTES,
    NCCL_LL_BUFFSIZE_BYTES,
    Overheads,
    allocator_slack_component,
    cublas_workspace_bytes,
    fixed_overhead_components,
    nccl_buffer_bytes,
)
from vramplan.units import KiB, MiB


def test_cublas_workspace_against_pytorch_docs():
    # PyTorch "Reproducibility" notes: CUBLAS_WORKSPACE_CONFIG=:16:8 or :4096:8, the
    # latter "will increase library footprint in GPU memory by approximately 24MiB"
    # over the default :4096:2:16:8 (pre-Hopper).
    assert cublas_workspace_bytes(":16:8") == 8 * 16 * KiB
    assert cublas_workspace_bytes(":4096:8") == 32 * MiB
    grow = cublas_workspace_bytes(":4096:8") - cublas_workspace_bytes(":4096:2:16:8")
    assert grow / MiB == pytest.approx(24, abs=0.2)
    with pytest.raises(InputError, match="cublas workspace config"):
        cublas_workspace_bytes("4096,8")


def test_nccl_buffers():
    # NCCL docs: NCCL_BUFFSIZE default 4194304 (4 MiB); LL128 and LL buffers from device.h.
    assert NCCL_LL_BUFFSIZE_BYTES == 512 * KiB and NCCL_LL128_BUFFSIZE_BYTES == 4_915_200
    assert nccl_buffer_bytes(peers_in_group=1, channels=16) == 0
    two = nccl_buffer_bytes(peers_in_group=2, channels=16)
    assert two == 16 * (4 * MiB + 4_915_200 + 512 * KiB)
    assert nccl_buffer_bytes(peers_in_group=8, channels=16) == 2 * two  # two ring neighbours


@given(ranks=st.integers(1, 64), channels=st.integers(1, 32))
def test_nccl_monotonic(ranks, channels):
    assert nccl_buffer_bytes(peers_in_group=ranks + 1, channels=channels) >= \
        nccl_buffer_bytes(peers_in_group=ranks, channels=channels)
    assert nccl_buffer_bytes(peers_in_group=ranks, channels=channels + 1) >= \
        nccl_buffer_bytes(peers_in_group=ranks, channels=channels)


def test_overrides_reach_the_estimate():
    base = estimate_inference("llama-3.1-8b", InferenceSetup())
    custom = estimate_inference("llama-3.1-8b", InferenceSetup(
        overheads=Overheads(cuda_context_bytes=300 * MiB, cublas_workspace_config=":4096:2:16:8",
                            allocator_slack_fraction=0.0)))
    assert custom.get("overhead/cuda_context") == 300 * MiB
    assert custom.get("overhead/cublas_workspace") == 8 * MiB + 128 * KiB
    assert custom.get("overhead/allocator_slack") == 0 < base.get("overhead/allocator_slack")
    names = [c.name for c in fixed_overhead_components(Overheads(), comm_group_ranks=4)]
    assert names == ["overhead/cuda_context", "overhead/cublas_workspace", "overhead/nccl"]
    assert allocator_slack_component(Overheads(allocator_slack_fraction=0.1), 1000).bytes == 100


@pytest.mark.parametrize("bad", [dict(cuda_context_bytes=-1), dict(nccl_channels=0),
                                 dict(allocator_slack_fraction=1.5), dict(cublas_workspace_config="x")])
def test_bad_overheads(bad):
    with pytest.raises(InputError):
        Overheads(**bad)


def test_cli_cuda_context_override(capsys):
    import json

    from vramplan.cli import main

    assert main(["infer", "llama-3.1-8b", "--cuda-context", "600MiB", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {c["name"]: c["bytes"] for c in data["components"]}["overhead/cuda_context"] == 600 * MiB
