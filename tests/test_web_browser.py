"""The web page in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import shutil
import threading

import pytest

from vramplan.web.server import make_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium"):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    server = make_server(port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        p = browser.new_page()
        p.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        yield p
        browser.close()
    server.shutdown()
    server.server_close()


def test_params_tab_counts(page):
    page.click("#tabs button[data-tab=params]")
    page.fill("input[name=model]", "gpt2")
    page.click("#go")
    page.wait_for_selector("#components tbody tr")
    assert "124,439,808" in page.inner_text("#verdict")
    assert "embeddings" in page.inner_text("#components")


def test_error_is_shown_not_thrown(page):
    page.click("#tabs button[data-tab=params]")
    page.fill("input[name=model]", "gpt3")
    page.click("#go")
    page.wait_for_selector("#error:not([hidden])")
    assert "did you mean 'gpt2'" in page.inner_text("#error")


def test_serve_tab_draws_breakdown_and_curves(page):
    page.click("#tabs button[data-tab=infer]")
    page.fill("input[name=model]", "llama-3.1-8b")
    page.fill("input[name=gpu]", "rtx-4090")
    page.fill("input[name=context]", "8192")
    page.click("#go")
    page.wait_for_selector("#curves figure svg path", timeout=60_000)
    verdict = page.inner_text("#verdict")
    assert "rtx-4090" in verdict and "GiB" in verdict
    # one stacked-bar segment per category with bytes, and both sweep curves
    assert page.locator("#stack rect").count() >= 3
    assert page.locator("#curves figure svg path").count() == 2
    assert "weights" in page.inner_text("#components")


def test_units_switch_to_decimal(page):
    page.select_option("#units", "GB")
    page.wait_for_function("document.querySelector('#verdict').innerText.includes(' GB')", timeout=60_000)
    page.select_option("#units", "GiB")
