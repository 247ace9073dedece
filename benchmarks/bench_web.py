"""Input change to updated result, measured in the browser.

    PYTHONPATH=src python benchmarks/bench_web.py [--repeat 7]

For each case the page is opened on a view, then one input is changed back and forth
``--repeat`` times the way a user does (the field's value is set and an ``input``
event fired); the time is from that event to the new result drawn with the
"updating" state cleared (debounce, request, JSON and drawing included). The
baseline, measured in the same run and the same page, is ``fetch`` of the same API
URL alone: the ratio is what the page adds on top of the server's answer. "busy"
repeats the changes 150 ms after each result, while the charts' sweeps are still
running on the server. Goals:
<= 150 ms for serve/train, <= 1 s for plans. Prints a table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import threading

CASES = (
    # (name, start query, field selector, two values, goal ms)
    ("serve: context", "?tab=infer&model=llama-3.1-8b&gpu=rtx-4090", 'fieldset[data-for="infer"] [name=context]',
     ("16384", "8192"), 150),
    ("serve: engine (select)", "?tab=infer&model=llama-3.1-8b&gpu=rtx-4090", 'fieldset[data-for="infer"] [name=engine]',
     ("vllm", "hf"), 150),
    ("serve: llama.cpp GPU layers", "?tab=infer&model=llama-3.1-8b&gpu=rtx-4090&engine=llamacpp&weights=Q4_K_M",
     'fieldset[data-for="infer"] [name=n-gpu-layers]', ("20", "28"), 150),
    ("train: sequence", "?tab=train&model=llama-3.1-8b&gpu=rtx-4090&method=qlora",
     'fieldset[data-for="train"] [name=seq]', ("4096", "2048"), 150),
    ("train: method (select)", "?tab=train&model=llama-3.1-8b&gpu=rtx-4090", 'fieldset[data-for="train"] [name=method]',
     ("lora", "qlora"), 150),
    ("train: ZeRO-3 on 16 GPUs, seq", "?tab=train&model=llama-3.1-70b&gpu=h100&gpus=16&zero=3",
     'fieldset[data-for="train"] [name=seq]', ("4096", "2048"), 150),
    ("plan: 8B on <= 8 H100, seq", "?tab=plan&model=llama-3.1-8b&gpu=h100&max-gpus=8",
     'fieldset[data-for="plan"] [name=seq]', ("8192", "4096"), 1000),
    ("plan: 70B on <= 64 H100, seq", "?tab=plan&model=llama-3.1-70b&gpu=h100&max-gpus=64",
     'fieldset[data-for="plan"] [name=seq]', ("8192", "4096"), 1000),
    ("plan: serve 70B, context", "?tab=plan&model=llama-3.1-70b&gpu=h100&max-gpus=16&job=infer",
     'fieldset[data-for="plan"] [name=seq]', ("32768", "8192"), 1000),
    ("plan: DeepSeek-V3 on <= 64 H100, seq", "?tab=plan&model=deepseek-v3&gpu=h100&max-gpus=64",
     'fieldset[data-for="plan"] [name=seq]', ("8192", "4096"), 1000),
)

CHANGE = """async ([sel, value]) => {
  const el = document.querySelector(sel);
  const settled = () => !document.querySelector('#result').classList.contains('stale')
    && document.querySelector('#status').hidden;
  const t0 = performance.now();
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  await new Promise((resolve) => requestAnimationFrame(resolve));
  while (!settled()) await new Promise((resolve) => setTimeout(resolve, 2));
  return performance.now() - t0;
}"""

FETCH = """async () => {
  const t0 = performance.now();
  await (await fetch(document.querySelector('#json-link a').href)).json();
  return performance.now() - t0;
}"""

IDLE = """() => new Promise((resolve) => {
  const done = () => !document.querySelector('#result').classList.contains('stale')
    && (document.querySelector('#curves svg') || !document.querySelector('#tab-plan[aria-selected=false]')
        || document.querySelector('#error:not([hidden])'));
  const start = performance.now();
  const poll = () => (done() || performance.now() - start > 8000) ? resolve() : setTimeout(poll, 20);
  poll();
})"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="Changes per case (alternating two values).")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from vramplan.web.server import make_server

    server = make_server(port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    rows = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, query, selector, values, goal in CASES:
                page.goto(base + query)
                page.wait_for_selector("#json-link a", timeout=120_000)
                page.evaluate(IDLE)
                updates, fetches = [], []
                for i in range(args.repeat):
                    updates.append(page.evaluate(CHANGE, [selector, values[i % 2]]))
                    page.evaluate(IDLE)  # charts and limits finish before the next change
                    fetches.append(page.evaluate(FETCH))
                busy = []
                for i in range(args.repeat):  # the next change 150 ms after the last result: charts still loading
                    busy.append(page.evaluate(CHANGE, [selector, values[i % 2]]))
                    page.wait_for_timeout(150)
                page.evaluate(IDLE)
                up, api = statistics.median(updates), statistics.median(fetches)
                rows.append((name, api, up, max(updates), up / api if api else float("nan"), statistics.median(busy), goal))
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    print(f"{'case':<40} {'API fetch ms':>12} {'update ms':>10} {'worst ms':>9} {'ratio':>6} {'busy ms':>8} "
          f"{'goal ms':>8}  ok")
    for name, api, up, worst, ratio, busy, goal in rows:
        ok = "yes" if max(up, busy) <= goal else "NO"
        print(f"{name:<40} {api:>12.0f} {up:>10.0f} {worst:>9.0f} {ratio:>6.2f} {busy:>8.0f} {goal:>8}  {ok}")
    print("update: median input-to-result time with the page idle (debounce included: 0 ms for selects, 40 ms for "
          "typed numbers);\nbusy: the same with the next change 150 ms after the last result, while its charts load;\n"
          "API fetch: the same URL fetched alone in the same page (the baseline); ratio = update / API fetch")


if __name__ == "__main__":
    main()
