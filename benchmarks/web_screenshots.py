"""Screenshots of the web page's main views at desktop and phone size.

    PYTHONPATH=src python benchmarks/web_screenshots.py [--out docs/screenshots]

Starts the web server on a free loopback port, drives Debian's Chromium
(``/usr/bin/chromium``, never a downloaded browser) with Playwright, waits for each
view's result and charts, and writes one full-page PNG per view and size. Prints
the paths written.
"""

from __future__ import annotations

import argparse
import shutil
import threading
from pathlib import Path

VIEWS = (
    # (file stem, query string, selector that marks the view as drawn)
    ("serve", "?tab=infer&model=llama-3.1-8b&gpu=rtx-4090&context=32768", "#curves svg"),
    ("serve-vllm", "?tab=infer&model=qwen2.5-7b&gpu=l40s&engine=vllm&batch=16", "#curves svg"),
    ("train-qlora", "?tab=train&model=llama-3.1-8b&gpu=rtx-4090&method=qlora", "#curves svg"),
    ("train-zero3", "?tab=train&model=llama-3.1-70b&gpu=h100&gpus=16&nodes=2&zero=3&seq=4096", "#phases"),
    ("plan-fits", "?tab=plan&model=llama-3.1-70b&gpu=h100&max-gpus=64", "#components tbody tr"),
    ("plan-nothing-fits", "?tab=plan&model=llama-3.1-70b&gpu=rtx-4090&max-gpus=2", "ul.changes li"),
    ("train-zh", "?tab=train&model=qwen2.5-7b&gpu=a100-80gb&method=lora&lang=zh", "#curves svg"),
)
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshots", help="Folder for the PNG files.")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from vramplan.web.server import make_server

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = make_server(port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            for size, viewport in SIZES.items():
                page = browser.new_page(viewport=viewport, device_scale_factor=1,
                                        is_mobile=size == "phone", has_touch=size == "phone")
                for stem, query, ready in VIEWS:
                    page.goto(base + query)
                    page.wait_for_selector(ready, timeout=120_000)
                    page.wait_for_function("!document.querySelector('#result').classList.contains('stale')")
                    page.wait_for_timeout(300)
                    path = out / f"{stem}-{size}.png"
                    page.screenshot(path=str(path), full_page=True)
                    print(path)
                page.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
