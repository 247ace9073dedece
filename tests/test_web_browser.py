"""The web page in a real browser (Debian's Chromium driven by Playwright), one test
per journey a user takes. The numbers on the page are checked against the command
line's JSON for the same flags."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil

import pytest

from loopback import serve_web
from tests.conftest import catalog_config
from vramplan.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser
SETTLED = "() => !document.querySelector('#result').classList.contains('stale') && document.querySelector('#status').hidden"


def gib(nbytes: int) -> str:
    """The page's rendering of a byte count in binary units."""
    for label, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(nbytes) >= size:
            return f"{abs(nbytes) / size:.2f} {label}"
    return f"{nbytes} B"


def cli_out(*argv: str) -> str:
    """What the command line prints, run in this process. While the server answers
    the page by running the command line with stdout redirected, this waits its turn
    and captures stdout itself (pytest's capsys can be swapped under a running
    request)."""
    from vramplan.web import api

    out = io.StringIO()
    with getattr(api, "_LOCK", None) or contextlib.nullcontext(), contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def cli_json(capsys, *argv: str) -> dict:
    return json.loads(cli_out(*argv, "--json"))


@pytest.fixture(scope="module")
def site():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium"):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with serve_web() as server, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser, f"{server.url}/"
        browser.close()


@pytest.fixture
def open_page(site):
    browser, base = site
    pages = []

    def _open(query: str = "", **context_options):
        context = browser.new_context(**context_options)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        page.goto(base + query)
        page.wait_for_selector("#verdict .verdict, #error:not([hidden])", timeout=60_000)
        page.wait_for_function(SETTLED, timeout=60_000)
        pages.append(page)
        return page

    yield _open
    for page in pages:
        assert page.errors == [], page.errors
        page.context.close()


def test_shared_url_restores_inputs_and_matches_the_cli(open_page, capsys):
    page = open_page("?tab=train&model=llama-3.1-8b&gpu=rtx-4090&method=qlora&batch=2&seq=4096&gpus=2&zero=2")
    assert page.get_attribute("#tab-train", "aria-selected") == "true"
    train = page.locator('fieldset[data-for="train"]')
    assert train.locator("[name=seq]").input_value() == "4096"
    assert train.locator("[name=method]").input_value() == "qlora"
    assert train.locator("[name=zero]").input_value() == "2"
    expected = cli_json(capsys, "train", "llama-3.1-8b", "--gpu", "rtx-4090", "--method", "qlora", "--batch", "2",
                        "--seq", "4096", "--gpus", "2", "--zero", "2")
    verdict = page.inner_text("#verdict")
    assert gib(expected["total_bytes"]) in verdict
    assert gib(expected["verdict"]["headroom_bytes"]) in verdict
    total_row = page.inner_text("#components tr.total")
    assert gib(expected["total_bytes"]) in total_row
    for comp in expected["components"]:
        assert comp["name"] in page.inner_text("#components")
    # the phases of the step are drawn as a timeline, one bar per phase
    assert page.locator("#phases rect").count() == len([p for p in expected["phases"] if p["bytes"] > 0])


def test_serve_shows_limits_and_charts_with_the_current_point(open_page, capsys):
    page = open_page("?tab=infer&model=llama-3.1-8b&gpu=rtx-4090&context=16384")
    page.wait_for_selector("#curves svg circle.current", timeout=60_000)
    solved_ctx = cli_json(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090", "--context", "16384", "--max-context")
    solved_batch = cli_json(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090", "--context", "16384", "--max-batch")
    limits = page.inner_text("#limits")
    assert f"{solved_ctx['solved']['max_context']:,}" in limits
    assert f"{solved_batch['solved']['max_batch']}" in limits
    # both curves mark the current value, draw the capacity and say where it is crossed
    assert page.locator("#curves svg circle.current").count() == 2
    curve = page.text_content("#curve-context")
    assert "16K" in curve and "GPU 23.99 GiB" in curve and "GiB" in curve and "≈" in curve
    # hovering a point shows its value
    page.locator("#curve-context circle.current").hover()
    assert re.search(r"16,384: \d+\.\d\d GiB", page.inner_text("#tooltip"))
    # one click applies the longest context that fits
    page.locator("#limits .apply").first.click()
    page.wait_for_function(f"location.search.includes('context={solved_ctx['solved']['max_context']}')")


def test_input_change_updates_without_a_click(open_page, capsys):
    page = open_page("?tab=infer&model=llama-3.1-8b&gpu=rtx-4090")
    # the page's default context is the command line's (vramplan.options.DEFAULT_CONTEXT_TOKENS):
    # nothing is written into the link, and the answer is the command's without --context
    assert "context=" not in page.url
    expected = cli_json(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090")
    assert gib(expected["total_bytes"]) in page.inner_text("#verdict")
    before = page.inner_text("#verdict")
    field = page.locator('fieldset[data-for="infer"] [name=context]')
    field.fill("")
    field.type("6553", delay=20)  # superseded values on the way
    # the last keystroke: at once the old result is marked as updating, never shown as current
    classes = page.evaluate("""() => { const el = document.querySelector('fieldset[data-for="infer"] [name=context]');
        el.value = '65536'; el.dispatchEvent(new Event('input', { bubbles: true }));
        return [document.querySelector('#result').className, document.querySelector('#result').getAttribute('aria-busy')]; }""")
    assert classes == ["stale", "true"]
    page.wait_for_function("location.search.includes('context=65536')")
    page.wait_for_function(SETTLED)
    expected = cli_json(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090", "--context", "65536")
    page.wait_for_function(f"document.querySelector('#verdict').innerText.includes('{gib(expected['total_bytes'])}')")
    assert page.inner_text("#verdict") != before
    assert "Does not fit" in page.inner_text("#verdict")
    # a select applies at once; switching engine shows that engine's own fields
    page.select_option('fieldset[data-for="infer"] [name=engine]', "vllm")
    assert page.locator("[name=gpu-memory-utilization]").is_visible()
    assert not page.locator("[name=n-gpu-layers]").is_visible()
    page.wait_for_function("location.search.includes('engine=vllm')")
    page.wait_for_function(SETTLED)
    expected = cli_json(capsys, "infer", "llama-3.1-8b", "--gpu", "rtx-4090", "--context", "65536", "--engine", "vllm")
    page.wait_for_function(f"document.querySelector('#verdict').innerText.includes('{gib(expected['total_bytes'])}')")


def test_language_switch(open_page):
    page = open_page("?tab=train&model=llama-3.1-8b&gpu=rtx-4090&method=qlora")
    assert "Fits on" in page.inner_text("#verdict")
    assert page.evaluate("Object.keys(I18N.en).filter((k) => !(k in I18N.zh))") == []
    page.click("#lang")
    assert page.get_attribute("html", "lang") == "zh-CN"
    # every visible label of the form is in Chinese (names of engines and parallelisms aside)
    english = page.evaluate("""[...document.querySelectorAll('#form [data-i18n]')].filter((el) => el.offsetParent)
        .map((el) => el.textContent).filter((s) => /^[A-Za-z ()/-]+$/.test(s) && !/^(GPU|LoRA|KV|TP|PP|CP|EP)/.test(s))""")
    assert english == []
    assert page.inner_text("#tab-train") == "训练 / 微调"
    assert "放得下" in page.inner_text("#verdict")
    assert "组成部分" in page.inner_text("#components")
    # the curves are redrawn after the switch; wait for them rather than race them
    page.wait_for_function("!document.querySelector('#curves figure') || "
                           "document.querySelector('#curves').innerText.includes('每卡显存')")
    page.wait_for_function("location.search.includes('lang=zh')")
    # a shared Chinese link opens in Chinese, and errors are labelled in Chinese
    page.goto(page.url.replace("model=llama-3.1-8b", "model=llama-9"))
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("错误: 未知的模型「llama-9」；是不是指")
    page.click("#lang")
    assert page.inner_text("#tab-train") == "Train / fine-tune"


def test_tabs_are_tabs_for_the_keyboard(open_page):
    page = open_page("?tab=infer&model=gpt2&gpu=rtx-4090")
    assert page.locator("[role=tablist] [role=tab]").count() == 4
    page.focus("#tab-infer")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#tab-train", "aria-selected") == "true"
    assert page.evaluate("document.activeElement.id") == "tab-train"
    page.wait_for_function(SETTLED)
    assert "train" in page.url
    # only the verdict (or the error in its place) is a live region, and a polite one
    assert page.locator("[aria-live], [role=alert], [role=status], [role=log]").count() == 1
    assert page.get_attribute("#live", "aria-live") == "polite"
    assert page.locator("#live #verdict").count() == 1 and page.locator("#live #error").count() == 1


def test_phone_viewport(open_page):
    page = open_page("?tab=infer&model=llama-3.1-8b&gpu=rtx-4090", viewport={"width": 390, "height": 844},
                     is_mobile=True, has_touch=True)
    # a shared link scrolls the result into view; nothing is wider than the screen
    page.wait_for_function("document.querySelector('#verdict').getBoundingClientRect().top < 844")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # the component table stacks: no header row on screen, each cell labelled
    assert page.locator("#components thead").bounding_box()["height"] <= 1
    assert page.get_attribute("#components tbody td.num >> nth=0", "data-label") == "Per GPU"
    # tap targets
    for sel in ("#tabs [role=tab]", "fieldset.common input", 'fieldset[data-for="infer"] select', "#lang", "#copy-link"):
        for box in [loc.bounding_box() for loc in page.locator(sel).all()]:
            assert box["height"] >= 44, sel
    # editing the form far from the result: the verdict rides along and one tap brings the result back
    page.evaluate("window.scrollTo(0, 0)")
    page.locator('fieldset[data-for="infer"] [name=batch]').fill("4")
    page.wait_for_function(SETTLED)
    page.wait_for_selector("#peek:not([hidden])")
    assert "rtx-4090" in page.inner_text("#peek")
    page.tap("#peek")
    page.wait_for_function("Math.abs(document.querySelector('#result').getBoundingClientRect().top) < 40")
    # chart text stays readable (drawn at its shown width)
    page.wait_for_selector("#curves svg")
    ratio = page.evaluate("(() => { const s = document.querySelector('#curves svg'); "
                          "return s.getBoundingClientRect().width / s.viewBox.baseVal.width; })()")
    assert ratio > 0.95


def test_plan_with_nothing_fitting_shows_changes_with_numbers(open_page, capsys):
    page = open_page("?tab=plan&model=llama-3.1-70b&gpu=rtx-4090&max-gpus=2", )
    page.wait_for_selector("ul.changes li")
    expected = cli_json(capsys, "plan", "llama-3.1-70b", "--gpu", "rtx-4090", "--max-gpus", "2")
    assert "Nothing fits" in page.inner_text("#verdict")
    items = page.locator("ul.changes li").all_inner_texts()
    assert len(items) == len(expected["changes"])
    for item, change in zip(items, expected["changes"], strict=True):
        assert change["change"] in item and gib(change["min_peak_bytes"]) in item
        if change["fits"]:
            assert f"fits on {change['min_gpus']} GPU{'' if change['min_gpus'] == 1 else 's'}" in item
    page.click("#lang")  # the changes in Chinese, numbers unchanged
    zh = page.inner_text("ul.changes")
    assert "更多 GPU（最多 4096 张）" in zh and "64 张 GPU 放得下" in zh
    page.click("#lang")
    qlora = page.locator("ul.changes li", has_text="QLoRA")
    qlora.locator(".apply").click()
    page.wait_for_function("location.search.includes('method=qlora')")
    page.wait_for_function(SETTLED)
    assert "Fits from" in page.inner_text("#verdict")


def test_plan_export_matches_the_cli(open_page, capsys):
    page = open_page("?tab=plan&model=llama-3.1-8b&gpu=h100&max-gpus=8")
    page.wait_for_selector(".exports button")
    with page.expect_download() as download:
        page.click(".export[data-engine=deepspeed]")
    path = download.value.path()
    expected = json.loads(cli_out("plan", "llama-3.1-8b", "--gpu", "h100", "--max-gpus", "8", "--export", "deepspeed"))
    assert json.loads(open(path).read()) == expected
    assert download.value.suggested_filename == "ds_config.json"


def test_pasted_config_json(open_page, capsys):
    page = open_page("?tab=train&model=gpt2&gpu=a100-80gb")
    page.click("#paste summary")
    page.fill("#paste-text", "{not json")
    page.click("#paste-use")
    page.wait_for_function("document.querySelector('#paste-status').innerText.includes('malformed JSON')")
    page.fill("#paste-text", json.dumps(catalog_config("qwen2.5-7b")))
    page.click("#paste-use")
    page.wait_for_function("document.querySelector('fieldset.common [name=model]').value.startsWith('pasted-')")
    page.wait_for_function(SETTLED)
    assert "7.62B parameters" in page.inner_text("#paste-status")
    # the pasted config is the catalog's Qwen2.5 7B: the same numbers
    expected = cli_json(capsys, "train", "qwen2.5-7b", "--gpu", "a100-80gb")
    page.wait_for_function(f"document.querySelector('#verdict').innerText.includes('{gib(expected['total_bytes'])}')")
    assert "model=pasted-" in page.url


def test_params_tab_and_an_error(open_page):
    page = open_page("?tab=params&model=gpt2")
    assert "124,439,808" in page.inner_text("#verdict")
    field = page.locator("fieldset.common [name=model]")
    field.fill("gpt3")
    page.wait_for_selector("#error:not([hidden])")
    assert "did you mean 'gpt2'" in page.inner_text("#error")
    assert page.inner_text("#verdict") == ""  # no stale result next to the error


def test_units_switch_and_copy_link(open_page):
    page = open_page("?tab=infer&model=llama-3.1-8b&gpu=rtx-4090", permissions=["clipboard-read", "clipboard-write"])
    page.select_option("#units", "GB")
    assert " GB" in page.inner_text("#verdict")
    page.wait_for_function("location.search.includes('units=GB')")
    page.click("#copy-link")
    page.wait_for_function("document.querySelector('#copy-link').innerText === 'Link copied'")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.url and "units=GB" in copied and "model=llama-3.1-8b" in copied


def test_plan_serving_uses_the_checkpoint_format(open_page, capsys):
    page = open_page("?tab=plan&model=deepseek-v3&gpu=h100&job=infer&max-gpus=64")
    expected = cli_json(capsys, "plan", "deepseek-v3", "--infer", "--gpu", "h100", "--max-gpus", "64",
                        "--weights", "fp8-block128")
    assert f"Fits from {expected['min_gpus']} × {expected['gpu']}" in page.inner_text("#verdict")
    assert "weights=fp8-block128" in page.get_attribute("#json-link a", "href")


CONTRAST = """() => {
  const lum = (rgb) => { const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map((v) => {
    v = v / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const bg = (el) => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
    if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };
  const out = {};
  const text = (sel) => { const el = document.querySelector(sel); out[sel] = ratio(getComputedStyle(el).color, bg(el)); };
  const border = (sel) => { const el = document.querySelector(sel); out[sel + ' border'] = ratio(getComputedStyle(el).borderTopColor, bg(el.parentElement)); };
  ['header p', 'label', '#model-info', '#tab-infer', '#tab-train', '#go', '#copy-link', '.verdict small', '#components td.note',
   '.legend li', 'figcaption', '#json-link a'].forEach(text);
  ['fieldset.common input', 'select[name=engine]', '#tab-train'].forEach(border);
  const ph = document.querySelector('[name=weights]');
  out['placeholder'] = ratio(getComputedStyle(ph, '::placeholder').color, 'rgb(255, 255, 255)');
  return out;
}"""


def test_contrast_meets_wcag_aa(open_page):
    page = open_page("?tab=infer&model=llama-3.1-8b&gpu=rtx-4090")
    page.wait_for_selector("#curves figcaption")
    ratios = page.evaluate(CONTRAST)
    for what, ratio in ratios.items():
        assert ratio >= (3.0 if what.endswith("border") else 4.5), (what, round(ratio, 2))


def test_plan_for_this_workload_carries_the_settings(open_page, capsys):
    page = open_page("?tab=train&model=llama-3.1-8b&gpu=rtx-4090&method=lora&seq=1024&zero=2&gpus=2")
    page.click("#plan-this")
    page.wait_for_function("location.search.includes('tab=plan')")
    page.wait_for_function(SETTLED)
    plan = page.locator('fieldset[data-for="plan"]')
    assert plan.locator("[name=method]").input_value() == "lora"
    assert plan.locator("[name=seq]").input_value() == "1024"
    assert plan.locator("[name=zero]").input_value() == "2"
    expected = cli_json(capsys, "plan", "llama-3.1-8b", "--gpu", "rtx-4090", "--max-gpus", "8", "--method", "lora",
                        "--seq", "1024", "--batch", "1", "--zero", "2")
    assert f"Fits from {expected['min_gpus']} × {expected['gpu']}" in page.inner_text("#verdict")
    # the previous tab's result is gone: a plan table, no component breakdown
    assert page.locator("#bar svg").count() == 0


def test_not_fitting_one_gpu_shows_the_fewest_that_do(open_page, capsys):
    page = open_page("?tab=train&model=llama-3.1-8b&gpu=rtx-4090&method=full")
    assert "Does not fit" in page.inner_text("#verdict")
    page.wait_for_selector("#limits .limit:has-text('Fewest GPUs')", timeout=60_000)
    expected = cli_json(capsys, "plan", "llama-3.1-8b", "--gpu", "rtx-4090", "--max-gpus", "64", "--method", "full",
                        "--precision", "bf16-mixed", "--optimizer", "adamw", "--attention", "sdpa",
                        "--lora-rank", "16", "--batch", "1", "--seq", "2048", "--top", "1")
    card = page.inner_text("#limits .limit:has-text('Fewest GPUs')")
    assert f"{expected['min_gpus']} × {expected['gpu']}" in card and gib(expected["candidates"][0]["peak_bytes"]) in card


def test_open_a_gguf_file(open_page, tmp_path, capsys):
    from tests.test_sources_fixtures import LLAMA, write_gguf

    (path,) = write_gguf(tmp_path / "tiny-Q4_0.gguf", LLAMA, "Q4_0")
    page = open_page("?tab=infer&model=gpt2&gpu=rtx-4090")
    sizes: list[int] = []
    page.on("request", lambda r: sizes.append(len(r.post_data_buffer or b"")) if "/api/gguf" in r.url else None)
    page.click("#paste summary")
    page.set_input_files("#paste-file", str(path))
    page.wait_for_function("document.querySelector('fieldset.common [name=model]').value.startsWith('pasted-')")
    page.wait_for_function(SETTLED)
    expected = cli_json(capsys, "infer", str(path), "--gpu", "rtx-4090")
    page.wait_for_function(f"document.querySelector('#verdict').innerText.includes('{gib(expected['total_bytes'])}')")
    assert sizes and max(sizes) <= path.stat().st_size


def test_not_fitting_one_gpu_lists_the_estimate_s_changes(open_page, capsys):
    page = open_page("?tab=train&model=llama-3.1-8b&gpu=rtx-4090&method=full")
    page.wait_for_selector("#actions ul.changes li")
    expected = cli_json(capsys, "train", "llama-3.1-8b", "--gpu", "rtx-4090", "--method", "full")
    v = expected["verdict"]
    verdict = page.inner_text("#verdict")
    assert gib(v["required_bytes"]) in verdict and gib(v["overhead_bytes"]) in verdict
    items = page.locator("#actions ul.changes li").all_inner_texts()
    assert len(items) == len(expected["changes"])
    for item, change in zip(items, expected["changes"], strict=True):
        # the settings as the page's query spells them (option names with dashes)
        query = " ".join(f"{k.replace('_', '-')}={str(v).lower() if isinstance(v, bool) else v}"
                         for k, v in change["settings"].items())
        assert change["change"] in item and query in item and gib(change["peak_bytes"]) in item
        assert ("then fits" in item) is change["fits"]
