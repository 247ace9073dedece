"""The seed article's examples, runnable, and the ZeRO figure it points to.

Sources of the hard-coded numbers:

* The seed article (shared/seed-article.zh.md, sec. 4 训练显存), LLaMA-7B int8 with AdamW:
  "模型参数: 7B * 1 bytes = 7GB", "梯度: 同上7GB", "优化器参数: AdamW 2倍模型参数 7GB * 2 = 14GB",
  "(4096 + 11008) * 2048 * 32 * 1byte = 990MB", "BatchSize设置为50",
  "7GB + 7GB + 14GB + 990M * 50/1024 ~= 77GB"; sec. 5: "大概是1.2倍的模型参数权重".
* ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054), Figure 1: Ψ = 7.5B, N_d = 64, K = 12:
  baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB per device.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.cli import main
from vramplan.errors import InputError
from vramplan.model import count_params, resolve_model
from vramplan.training import TrainingSetup, estimate_training

ARTICLE_SETUP = TrainingSetup(activation_model="seed", precision="int8", batch=50, seq=2048)


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_article_int8_example_term_by_term():
    est = estimate_training("llama-2-7b", ARTICLE_SETUP)
    seed = est.seed
    article = {t.name: t.article_gb for t in seed.terms}
    assert article == {"weights": 7, "gradients": 7, "optimizer": 14, "activations": 48.34}  # 990 x 50 / 1024
    assert seed.article_total_gb == 76.34 and seed.article_stated == "~= 77GB"
    assert seed.article_line == "7GB + 7GB + 14GB + 990M x 50 / 1024 = 76.34GB"
    # the exact column: the same rule with the real count and bytes, and it is the estimate
    per_sample = (4096 + 11008) * 2048 * 32 * 1
    assert per_sample == 989_855_744 == est.details["seed_activation_bytes_per_sample"]
    params = count_params(resolve_model("llama-2-7b")).total_params
    exact = {t.name: t.exact_bytes for t in seed.terms}
    assert exact == {"weights": params, "gradients": params, "optimizer": 2 * params, "activations": 50 * per_sample}
    assert seed.exact_total_bytes == est.total_bytes == 4 * params + 50 * per_sample


def test_precision_drives_the_bytes():
    one = estimate_training("llama-2-7b", ARTICLE_SETUP)
    for precision, b in (("fp16", 2), ("bf16", 2), ("fp32", 4)):
        est = estimate_training("llama-2-7b", TrainingSetup(activation_model="seed", precision=precision,
                                                            batch=50, seq=2048))
        assert est.seed.bytes_per_value == b and est.total_bytes == b * one.total_bytes
        assert est.seed.article_stated is None  # not the article's own example any more
    override = estimate_training("llama-2-7b", TrainingSetup(activation_model="seed", precision="fp32",
                                                             seed_dtype_bytes=1, batch=50, seq=2048))
    assert override.total_bytes == one.total_bytes


def test_the_cli_prints_one_total_per_column(capsys):
    code, out, err = run(capsys, "train", "llama-2-7b", "--precision", "int8", "--activation-model", "seed",
                         "--batch", "50", "--units", "GB")
    assert code == 0 and err == ""
    for text in ("7B x 1 B = 7GB", "2 x 7GB = 14GB", "990M x 50 / 1024 = 48.34GB", "76.34GB (article: ~= 77GB)",
                 "76.45 GB", "989,855,744 B per sample"):
        assert text in out
    totals = [line for line in out.splitlines() if "total" in line and "│" in line]
    assert len(totals) == 1
    assert "75.29" not in out and "seed_article_total_gb" not in out
    code, out, _ = run(capsys, "train", "llama-2-7b", "--precision", "int8", "--activation-model", "seed",
                       "--batch", "50", "--json")
    data = json.loads(out)
    assert data["seed_article"]["article_total_gb"] == 76.34
    assert data["seed_article"]["exact_total_bytes"] == data["total_bytes"]


def test_int8_is_the_rule_not_a_recipe(capsys):
    with pytest.raises(InputError, match="activation_model seed"):
        TrainingSetup(precision="int8")
    code, out, err = run(capsys, "train", "llama-2-7b", "--precision", "int8")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--activation-model seed" in err
    code, _, err = run(capsys, "train", "llama-2-7b", "--activation-model", "seed", "--gpus", "8", "--zero", "1")
    assert code == 2 and "one GPU" in err


def test_the_article_batch_on_an_a100_80gb():
    """The article: an A100 80GB takes batch 50 at int8 by its rule."""
    est = estimate_training("llama-2-7b", ARTICLE_SETUP, gpu="a100-80gb")
    assert est.verdict.fits and est.fits.largest_micro_batch >= 50


ZERO_FIGURE_1_GB = {"0": 120, "1": 31.4, "2": 16.6, "3": 1.9}


@pytest.mark.parametrize("stage", sorted(ZERO_FIGURE_1_GB))
def test_zero_figure_1_model_states(capsys, stage):
    code, out, err = run(capsys, "train", "7.5B", "--precision", "fp16-mixed", "--zero", stage, "--gpus", "64",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert round(data["total_bytes"] / 1e9, 1) == ZERO_FIGURE_1_GB[stage]
    psi, k, nd = 7.5e9, 12, 64
    exact = {"0": (2 + 2 + k) * psi, "1": 4 * psi + k * psi / nd, "2": 2 * psi + (2 + k) * psi / nd,
             "3": (2 + 2 + k) * psi / nd}[stage]
    assert data["total_bytes"] == pytest.approx(exact, abs=4)
    assert any("ZeRO paper's Figure 1" in a for a in data["assumptions"])
    assert "convention" in data["details"]


def test_a_bare_count_refuses_what_splits_layers(capsys):
    code, _, err = run(capsys, "train", "7.5B", "--gpus", "8", "--tp", "2")
    assert code == 2 and "--tp" in err and err.count("\n") == 1


def test_inference_keeps_the_rule_of_thumb(capsys):
    code, out, _ = run(capsys, "infer", "llama-3.1-8b")
    assert code == 0 and "rule of thumb (1.2 x weights" in out


@settings(max_examples=30, deadline=None)
@given(billions=st.integers(1, 1000), nd=st.sampled_from([2, 4, 8, 64, 256, 1024]))
def test_zero_stages_only_ever_shrink_and_stage_3_is_the_baseline_split(billions, nd):
    from vramplan.model import resolve_model
    from vramplan.parallel import layout_from_gpus

    model = resolve_model(f"{billions}B")
    setup = TrainingSetup(precision="fp16-mixed")
    totals = [estimate_training(model, setup, layout_from_gpus(nd, zero_stage=z)).total_bytes for z in range(4)]
    assert totals == sorted(totals, reverse=True)
    assert totals[0] == 16 * billions * 10**9
    assert abs(totals[3] * nd - totals[0]) <= 4 * nd
