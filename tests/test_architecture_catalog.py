"""The built-in catalog: at least 80 models, each citing where its config was
published, each read offline (no transformers) to the same count transformers'
completion gives, and within the published size of the model."""

from __future__ import annotations

import pytest

from conftest import catalog_config, catalog_slugs
from vramplan.catalog import catalog
from vramplan.model import count_params
from vramplan.model.hf_config import spec_from_config


def test_catalog_has_at_least_80_models_each_with_a_source():
    entries = catalog()
    assert len(entries) >= 80
    for entry in entries:
        assert "https://huggingface.co/" in entry.source, entry.slug
        assert entry.hub_id.split("/")[-1] in entry.source or entry.hub_id in entry.source, entry.slug


@pytest.mark.exact
@pytest.mark.parametrize("slug", catalog_slugs())
def test_offline_reading_equals_reading_completed_by_transformers(slug):
    """The CLI reads catalog entries without transformers (``complete=False``): the
    family defaults must give what transformers' config class fills in."""
    pytest.importorskip("transformers")
    cfg = catalog_config(slug)
    offline = count_params(spec_from_config(cfg, name=slug, complete=False)).total_params
    assert offline == count_params(spec_from_config(cfg, name=slug, complete=True)).total_params


PUBLISHED_BILLIONS = {
    # model card / report sizes in billions, as published (the last digit given is the unit of the check)
    "qwen3-0.6b": "0.6", "qwen3-1.7b": "1.7", "qwen3-4b": "4.0", "qwen3-14b": "14.8", "qwen3-32b": "32.8",
    "deepseek-v3.2": "671", "kimi-k2": "1000", "smollm3-3b": "3.1", "phi-4-mini": "3.8", "santacoder": "1.1",
    "olmo-2-32b": "32.2", "gemma-2b": "2.5", "tinyllama-1.1b": "1.1", "codellama-34b": "34",
}


@pytest.mark.parametrize("slug", sorted(PUBLISHED_BILLIONS))
def test_sizes_match_the_published_figures(slug):
    """Within one unit of the last published digit (DeepSeek's 671B is 671.9B counted;
    Kimi K2's "1 trillion" is 1,026B)."""
    figure = PUBLISHED_BILLIONS[slug]
    unit = 10.0 ** -(len(figure.split(".")[1]) if "." in figure else 0)
    if figure == "1000":
        unit = 100.0
    total = count_params(spec_from_config(catalog_config(slug), name=slug, complete=False)).total_params / 1e9
    assert abs(total - float(figure)) < unit
