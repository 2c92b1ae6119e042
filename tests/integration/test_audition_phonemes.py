"""The audition page's Phonemes view in headless Chromium (selenium), on the real model:
show what a text becomes, edit the phonemes, hear them; a bad symbol shows the server's
message. Skipped without Debian's chromium and chromium-driver. ~20-40 s."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.http_api.app import HttpService, make_app
from fastkokoro_wyoming.http_api.metrics import Metrics
from tests.support.daemon import TIMEOUT

CHROMIUM = Path(os.environ.get("FASTKOKORO_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FASTKOKORO_CHROMEDRIVER", "/usr/bin/chromedriver"))
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver",
    ),
]


@pytest.fixture(scope="module")
async def server(engine: object) -> AsyncIterator[str]:
    cfg = HttpConfig(host="127.0.0.1", port=0)
    service = HttpService(make_app(engine, cfg, Metrics()), cfg.host, cfg.port)  # type: ignore[arg-type]
    await service.start()
    try:
        yield f"http://127.0.0.1:{service.port}"
    finally:
        await service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT, poll_frequency=0.05).until(condition, message)


def value_of(driver, element_id: str, prop: str = "value") -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').{prop}")


async def test_show_edit_and_hear_phonemes(browser, server):
    def run() -> dict:
        from selenium.webdriver.common.by import By

        browser.get(server + "/")
        wait_for(browser, lambda d: d.execute_script("return document.body.dataset.voices"),
                 "the voices never loaded")  # fmt: skip
        browser.execute_script(
            "document.getElementById('text').value = arguments[0]",
            "I use [Kokoro](/kˈOkəɹO/) every day — it isn’t hard.",
        )
        browser.find_element(By.ID, "show-phonemes").click()
        shown = wait_for(browser, lambda d: value_of(d, "phonemes"), "no phonemes shown")
        edited = shown.replace("kˈOkəɹO", "kəkˈɔɹO")
        browser.execute_script("document.getElementById('phonemes').value = arguments[0]", edited)
        browser.find_element(By.ID, "speak-phonemes").click()
        played = wait_for(
            browser,
            lambda d: (
                d.execute_script("return document.body.dataset.phonemesPlayed")
                or value_of(d, "error", "textContent")
            ),
            "nothing played",
        )
        duration = wait_for(
            browser, lambda d: value_of(d, "phoneme-player", "duration"), "no duration"
        )
        browser.execute_script("document.getElementById('phonemes').value = 'həlˈO ʀ'")
        browser.find_element(By.ID, "speak-phonemes").click()
        refused = wait_for(browser, lambda d: value_of(d, "error", "textContent"), "no error")
        return {"shown": shown, "played": played, "duration": duration, "refused": refused,
                "count": value_of(browser, "phoneme-count", "textContent")}  # fmt: skip

    got = await asyncio.to_thread(run)
    print(got)
    assert "kˈOkəɹO" in got["shown"] and "ˈɪzᵊnt" in got["shown"]
    assert got["count"].endswith("tokens")
    assert int(got["played"]) > 10_000 and got["duration"] > 1.0
    assert "U+0280" in got["refused"]
