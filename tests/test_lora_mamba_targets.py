"""LoRA targets on the Mamba-based model types where peft refuses ``out_proj``: the
default is every other linear, and the adapters counted equal what peft builds."""

from __future__ import annotations

import warnings

import pytest

from vramplan.errors import InputError
from vramplan.memory.lora import PEFT_MAMBA_TYPES, adapter_groups
from vramplan.model.hf_config import spec_from_config
from vramplan.training import TrainingSetup, estimate_training, lora_targets

_IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
TINY = {
    "mamba": dict(hidden_size=64, num_hidden_layers=2, vocab_size=100, state_size=8, intermediate_size=128,
                  time_step_rank=8),
    "falcon_mamba": dict(hidden_size=64, num_hidden_layers=2, vocab_size=100, state_size=8, intermediate_size=128,
                         time_step_rank=8),
    "mamba2": dict(hidden_size=64, num_hidden_layers=2, vocab_size=100, state_size=8, num_heads=8, head_dim=16,
                   n_groups=2, expand=2),
    "nemotron_h": dict(hidden_size=64, vocab_size=100, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                       intermediate_size=96, hybrid_override_pattern="M-M*-", mamba_num_heads=8, mamba_head_dim=16,
                       n_groups=2, ssm_state_size=8, expand=2),
    "falcon_h1": dict(hidden_size=64, num_hidden_layers=2, vocab_size=100, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=96, mamba_d_ssm=64, mamba_n_heads=8, mamba_d_head=8,
                      mamba_n_groups=2, mamba_d_state=8, mamba_d_conv=4, mamba_rms_norm=True, **_IDS),
}


def _built(model_type):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = transformers.AutoConfig.for_model(model_type, **TINY[model_type])
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
    return config, model


def test_the_listed_types_are_peft_s():
    peft = pytest.importorskip("peft")
    import inspect

    from peft.tuners import tuners_utils

    source = inspect.getsource(tuners_utils._check_lora_target_modules_mamba)
    assert all(repr(t) in source or f'"{t}"' in source for t in PEFT_MAMBA_TYPES), peft.__version__


@pytest.mark.exact
@pytest.mark.parametrize("model_type", sorted(TINY))
def test_default_targets_are_what_peft_accepts_and_counted_as_it_builds(model_type):
    peft = pytest.importorskip("peft")
    config, model = _built(model_type)
    spec = spec_from_config(config.to_dict(), complete=False)
    setup = TrainingSetup(method="lora", lora_rank=4)
    targets = lora_targets(spec, setup)
    assert "out_proj" not in targets
    with pytest.raises(ValueError, match="incompatible with Mamba-based models"):
        peft.get_peft_model(_built(model_type)[1], peft.LoraConfig(r=4, target_modules="all-linear"))
    theirs = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=list(targets)))
    trainable = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert sum(g.params for g in adapter_groups(spec, targets, 4)) == trainable
    with pytest.raises(InputError, match="peft refuses LoRA on out_proj"):
        estimate_training(spec, TrainingSetup(method="lora", lora_targets=("all-linear",)))


@pytest.mark.exact
@pytest.mark.parametrize("model_type", ["mamba2", "falcon_h1"])
def test_the_trace_of_all_linear_lora_runs_on_the_targets_peft_accepts(model_type):
    pytest.importorskip("torch")
    from vramplan.trace.compare import analytical_estimate, tensor_bytes
    from vramplan.trace.extrapolate import trace_extrapolated
    from vramplan.trace.setup import TraceSetup

    config, _ = _built(model_type)
    setup = TraceSetup(method="lora", lora_targets=("all-linear",), lora_rank=4, batch_size=1, seq=64)
    traced = trace_extrapolated(config.to_dict(), setup)
    estimated = analytical_estimate(config.to_dict(), setup)
    assert traced.peak_bytes > 0 and tensor_bytes(estimated) > 0
