"""`vlx serve` in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
which `.ci/run` installs) driven by Selenium through the page as a person uses it.

Screenshots of each step are written to $VLX_SCREENSHOTS (default: the test's temporary
folder); the README's are made by `VLX_SCREENSHOTS=docs/figures pytest
tests/test_serve_browser.py`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from served import fetch, need, picture, running

need("fastapi")
webdriver = need("selenium.webdriver")
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("chromium and chromium-driver are missing: .ci/run installs them")
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A headless Chromium on the page, served from the shipped models."""
    from vlx.serve.session import Demo
    from vlx.tasks.loading import DEFAULTS, load_task

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLX_CACHE", str(tmp_path_factory.mktemp("vlx-cache")))
        demo = Demo({kind: load_task(kind) for kind in DEFAULTS}, dict(DEFAULTS),
                    probe_images=4)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--window-size=1280,1000"):
            options.add_argument(argument)
        browser = webdriver.Chrome(options=options,
                                   service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        try:
            with running(demo) as url:
                browser.get(url)
                yield browser
        finally:
            browser.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("VLX_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shown(browser) -> int:
    """How many maps the page has shown so far."""
    return int(browser.execute_script("return document.body.dataset.shown || '0'"))


def after(browser, action, count: int = 1, timeout: float = 60) -> None:
    """Do ``action`` and wait until ``count`` more maps are shown."""
    before = shown(browser)
    action()
    WebDriverWait(browser, timeout).until(lambda b: shown(b) >= before + count)


def click(browser, element_id: str) -> None:
    browser.find_element(By.ID, element_id).click()


def names(browser) -> list[str]:
    """The targets listed: classes, words or answers."""
    return [b.get_attribute("data-name")
            for b in browser.find_elements(By.CSS_SELECTOR, "#targets button")]


def target(browser, name: str):
    return browser.find_element(By.CSS_SELECTOR, f'#targets button[data-name="{name}"]')


def maps(browser) -> dict[str, np.ndarray]:
    return {img.get_attribute("data-method"): picture(img.get_attribute("src"))
            for img in browser.find_elements(By.CSS_SELECTOR, "#panels img.map")}


def text_of(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def test_the_page_in_a_browser(page, shots, tmp_path):
    browser = page
    WebDriverWait(browser, 60).until(lambda b: shown(b) >= 1)  # chelsea, on opening
    # Classification: pick the bundled cat photo; its top class and its maps.
    after(browser, lambda: click(browser, "sample-coffee"))
    assert text_of(browser, "prediction") == "top class: espresso"
    after(browser, lambda: click(browser, "sample-chelsea"))
    assert text_of(browser, "prediction") == "top class: Egyptian cat"
    after(browser, lambda: target(browser, "tiger cat").click())
    assert list(maps(browser)) == ["gradcam", "counterfactual", "guided-gradcam"]
    assert browser.execute_script("return document.body.dataset.target") == "tiger cat"
    record, _ = fetch(browser.find_element(By.ID, "download-record").get_attribute("href"))
    assert [t["name"] for t in json.loads(record)["images"][0]["targets"]] == ["tiger cat"] * 3
    browser.save_screenshot(str(shots / "serve_classify.png"))

    # Captioning: a ShapesWorld scene uploaded; two words' maps differ.
    from vlx.data.shapes import SPLITS, ShapesWorld

    scene_file = tmp_path / "scene.png"
    Image.fromarray(ShapesWorld(seed=0).scene(SPLITS["test"][0]).image).save(scene_file)
    after(browser, lambda: click(browser, "task-caption"))
    after(browser, lambda: browser.find_element(By.ID, "upload").send_keys(str(scene_file)))
    words = names(browser)
    assert text_of(browser, "prediction") == "generated: " + " ".join(words)
    after(browser, lambda: target(browser, "circle").click())
    circle = maps(browser)["gradcam"]
    after(browser, lambda: target(browser, "triangle").click())
    triangle = maps(browser)["gradcam"]
    assert np.abs(circle.astype(int) - triangle.astype(int)).mean() > 5
    browser.find_element(By.ID, "text-toggle").click()
    WebDriverWait(browser, 60).until(
        lambda b: b.find_elements(By.ID, "text-sentence"))  # dissected on 4 probe images
    assert text_of(browser, "text-sentence").startswith('"triangle" because of')
    browser.save_screenshot(str(shots / "serve_caption.png"))
    browser.find_element(By.ID, "text-toggle").click()
    typed = browser.find_element(By.ID, "caption-text")
    caption = "a small red triangle on a checkered background"
    typed.send_keys(caption)
    after(browser, lambda: click(browser, "caption-go"))
    assert names(browser) == caption.split(" ")

    # VQA: the predicted answer's map, then a forced answer's, which differs.
    after(browser, lambda: click(browser, "task-vqa"))
    question = browser.find_element(By.ID, "question")
    question.clear()
    question.send_keys("what color is the circle?")
    after(browser, lambda: click(browser, "ask"))
    assert text_of(browser, "prediction") == "answer: white"
    predicted = maps(browser)["gradcam"]
    browser.find_element(By.ID, "force-answer").send_keys("red")
    after(browser, lambda: click(browser, "force"))
    assert browser.execute_script("return document.body.dataset.target") == "red"
    assert target(browser, "red").get_attribute("class") == "target selected"
    assert not np.array_equal(maps(browser)["gradcam"], predicted)
    record, _ = fetch(browser.find_element(By.ID, "download-record").get_attribute("href"))
    assert [(a["answer"], a["forced"]) for a in json.loads(record)["answers"]] == [
        ("white", False), ("red", True)]
    browser.save_screenshot(str(shots / "serve_vqa.png"))

    # A 0-byte upload is a message; the page still works.
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    browser.find_element(By.ID, "upload").send_keys(str(empty))
    WebDriverWait(browser, 30).until(
        lambda b: "is empty (0 bytes)" in b.find_element(By.ID, "message").text)
    browser.save_screenshot(str(shots / "serve_bad_upload.png"))
    after(browser, lambda: click(browser, "task-classify"))
    assert text_of(browser, "message") == ""
    after(browser, lambda: click(browser, "sample-chelsea"))
    assert text_of(browser, "prediction") == "top class: Egyptian cat"
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
                and "status of 400" not in e["message"]]
