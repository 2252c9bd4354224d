"""The page's speed, as a person meets it: `vlx serve` on the shipped models, in headless Chromium.

Measures:
  start      - `vlx serve` started until it prints its address (the three models loaded);
  first load - the page opened until its first map is shown (the bundled cat photo, classified
               by EfficientNet-Lite0 and its top class explained), and until its HTML is read;
  word click - a caption word clicked until its map is drawn, median and max of --clicks
               clicks on the shipped captioner (the page's own timer: click to decoded image);
  word (HTTP) - the same request without the browser, median of --clicks;
  caption    - a new image's caption made and every word explained (the forward a click
               reuses), from the button to the first map.
Goal: word click median under 300 ms on the CPU.

Needs the serve extra, selenium, and Debian's chromium and chromium-driver.

    python benchmarks/bench_serve.py [--clicks 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from vlx.data.shapes import SPLITS, ShapesWorld

GOAL_MS = 300


def shown(browser: webdriver.Chrome) -> int:
    return int(browser.execute_script("return document.body.dataset.shown || '0'"))


def after(browser: webdriver.Chrome, action) -> float:
    """Do ``action``, wait for the next map; the page's milliseconds from click to map."""
    before = shown(browser)
    action()
    WebDriverWait(browser, 120).until(lambda b: shown(b) > before)
    return float(browser.execute_script("return document.body.dataset.mapMs"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args()
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "vlx", "serve", "--port", "0"],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    browser = None
    try:
        url = server.stdout.readline().split()[2]
        started = time.perf_counter() - start
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1280,1000"):
            options.add_argument(argument)
        browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(
            executable_path=shutil.which("chromedriver")))
        browser.get(url)
        WebDriverWait(browser, 300).until(lambda b: shown(b) >= 1)
        first_map = float(browser.execute_script("return document.body.dataset.firstMapAt"))
        html = float(browser.execute_script(
            "return performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"))
        after(browser, lambda: browser.find_element(By.ID, "task-caption").click())
        with tempfile.TemporaryDirectory() as folder:
            scene = Path(folder) / "scene.png"
            Image.fromarray(ShapesWorld(seed=0).scene(SPLITS["test"][0]).image).save(scene)
            caption = after(browser, lambda: browser.find_element(By.ID, "upload").send_keys(
                str(scene)))
        buttons = browser.find_elements(By.CSS_SELECTOR, "#targets button")
        clicks = [after(browser, buttons[(k + 1) % len(buttons)].click)
                  for k in range(args.clicks)]
        image = browser.execute_script("return state.image")
        http = []
        for k in range(args.clicks):
            query = urllib.parse.urlencode({"task": "caption", "image": image,
                                            "target": (k + 1) % len(buttons)})
            began = time.perf_counter()
            with urllib.request.urlopen(f"{url}api/explain?{query}") as response:
                json.loads(response.read())
            http.append((time.perf_counter() - began) * 1000)
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait()
    median = statistics.median(clicks)
    rows = [
        ("start (three models loaded)", f"{started:.1f} s"),
        ("first load: HTML read", f"{html:.0f} ms"),
        ("first load: first map shown", f"{first_map:.0f} ms"),
        (f"caption of a new image, {len(buttons)} words explained", f"{caption:.0f} ms"),
        (f"word click to map, median of {len(clicks)} (max)",
         f"{median:.1f} ms ({max(clicks):.1f})"),
        (f"word request over HTTP alone, median of {len(http)}",
         f"{statistics.median(http):.1f} ms"),
    ]
    print("| measurement | time |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    verdict = "PASS" if median < GOAL_MS else "MISS"
    print(f"\nGoal word click median < {GOAL_MS} ms: {median:.1f} ms, {verdict}")


if __name__ == "__main__":
    main()
