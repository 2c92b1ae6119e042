"""The voice-audition page (``GET /``) in headless Chromium, on the real model.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them), driven by
Selenium, against a real HTTP server on loopback: the page lists the live catalog by
language, Speak streams ``/dev/captioned_speech`` into the <audio> element (its
currentTime advances), the highlighted word follows the timestamps in order, a refused
voice shows the server's message, and with an API key the page asks for it, then works.

The server runs on the test's event loop, so every browser call (blocking WebDriver
HTTP) goes through ``asyncio.to_thread``. A screenshot of the page mid-sentence is saved
to ``$FASTKOKORO_ARTIFACTS`` (default ``tests/artifacts/``, ignored by git).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.http_api.app import HttpService, make_app
from fastkokoro_wyoming.http_api.metrics import Metrics
from tests.support.daemon import TIMEOUT

CHROMIUM = Path(os.environ.get("FASTKOKORO_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("FASTKOKORO_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = Path(
    os.environ.get("FASTKOKORO_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts"
)
KEY = "page-secret"
# Three sentences, about 9 s of audio: long enough to watch the highlight move.
TEXT = (
    "The museum opens at nine in the morning. Guided tours leave from the main hall "
    "every hour. Please leave large bags in the cloakroom."
)
MIN_COVERAGE = 0.8  # of the words, highlighted at some point (a word is ~0.3 s; frames ~16 ms)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver",
    ),
]

# Records every word the page highlights, with the audio element's time when it did.
RECORD_HIGHLIGHTS = """
window.__highlights = [];
const player = document.getElementById('player');
new MutationObserver((records) => {
  for (const r of records) {
    if (r.target.classList && r.target.classList.contains('current')) {
      window.__highlights.push([Number(r.target.dataset.index), player.currentTime]);
    }
  }
}).observe(document.getElementById('transcript'),
           {subtree: true, attributes: true, attributeFilter: ['class']});
"""
VOICE_GROUPS = """
return [...document.querySelectorAll('#voice-a optgroup')].map(
  (g) => [g.dataset.language, [...g.querySelectorAll('option')].map((o) => o.value)]);
"""


# --- fixtures ---------------------------------------------------------------------------


async def _serve(engine: object, **settings: object) -> HttpService:
    """A real HTTP front end on loopback over the session engine (no Wyoming listener)."""
    cfg = HttpConfig(host="127.0.0.1", port=0, **settings)  # type: ignore[arg-type]
    service = HttpService(make_app(engine, cfg, Metrics()), cfg.host, cfg.port)  # type: ignore[arg-type]
    await service.start()
    return service


@pytest.fixture(scope="module")
async def server(engine: object) -> AsyncIterator[str]:
    service = await _serve(engine)
    try:
        yield f"http://127.0.0.1:{service.port}"
    finally:
        await service.stop()


@pytest.fixture(scope="module", params=[True, False], ids=["catalog-open", "catalog-closed"])
async def keyed_server(engine: object, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """``http.api_key`` set: with the catalog open (the default) Speak is the first 401,
    with ``public_catalog: false`` the page's first fetch (the voices) is."""
    service = await _serve(engine, api_key=KEY, public_catalog=request.param)
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
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
        "--window-size=1100,1200",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_script_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=TIMEOUT, sock_connect=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


# --- browser helpers (blocking: run them in a thread) ------------------------------------


def wait_for(driver, condition, timeout: float = TIMEOUT, message: str = ""):
    """The first truthy ``condition(driver)``, polled; fails after ``timeout`` seconds."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, message)


def open_page(driver, url: str) -> None:
    driver.get(url + "/")
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.voices"),
             message="the voices never loaded")  # fmt: skip


def text_of(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def script_errors(driver) -> list[str]:
    """Console errors since the last call, but for the HTTP refusals the tests provoke."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]


def save_screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"no screenshot at {path}"
    return path


def speak_and_watch(driver, screenshot: str | None = None) -> dict:
    """Speak with Ctrl+Enter in the text box; sample the audio element until it ends."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.execute_script(RECORD_HIGHLIGHTS)
    box = driver.find_element(By.ID, "text")
    box.click()
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    times, shot = [], None
    poll = "const p = document.getElementById('player'); return [p.currentTime, p.paused, p.ended]"

    def sample(d) -> bool:
        nonlocal shot
        now, paused, ended = d.execute_script(poll)
        times.append((now, paused))
        # mid-sentence: a word lit and audio left to play
        lit = d.execute_script("return document.querySelector('.word.current') !== null")
        if screenshot and shot is None and lit and now > 2.0:
            shot = save_screenshot(d, screenshot)
        return ended or bool(text_of(d, "error"))

    wait_for(driver, sample, message="the audio never ended")
    return {
        "times": times,
        "highlights": driver.execute_script("return window.__highlights"),
        "words": driver.execute_script(
            "return [...document.querySelectorAll('#transcript .word')].map(s => s.textContent)"
        ),
        "duration": driver.execute_script("return document.getElementById('player').duration"),
        "error": text_of(driver, "error"),
        "screenshot": shot,
    }


def download_size(driver) -> int:
    """Bytes behind the Download link (a Blob URL of what was received)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const a = document.getElementById('download');"
        "if (a.hidden || !a.href.startsWith('blob:')) { done(-1); return; }"
        "fetch(a.href).then(r => r.arrayBuffer()).then(b => done(b.byteLength), () => done(-2));"
    )


def assert_played_and_followed(run: dict) -> None:
    assert not run["error"], run["error"]
    playing = [t for t, paused in run["times"] if not paused]
    assert playing and max(playing) > 1.0, f"currentTime never advanced: {run['times'][-5:]}"
    assert run["duration"] > 3.0
    words, highlights = run["words"], [i for i, _ in run["highlights"]]
    bare = [w.strip(".,!?").lower() for w in TEXT.split()]
    assert [w.strip(".,!?").lower() for w in words] == bare  # one span per spoken word
    assert highlights == sorted(highlights), f"highlight went backwards: {highlights}"
    coverage = len(set(highlights)) / len(words)
    print(f"{len(words)} words, {coverage:.2f} lit, audio {run['duration']:.2f} s: {highlights}")
    assert coverage >= MIN_COVERAGE, f"{coverage:.2f} of {len(words)} words lit: {highlights}"
    lit_times = [t for _, t in run["highlights"]]
    assert lit_times == sorted(lit_times)


# --- tests ------------------------------------------------------------------------------


async def test_lists_every_voice_grouped_by_language(browser, server, http):
    async with http.get(server + "/v1/audio/voices") as r:
        catalog = (await r.json())["voices"]
    expected: dict[str, list[str]] = {}
    for voice in catalog:
        expected.setdefault(voice["language"], []).append(voice["id"])

    def read() -> tuple[list, list[str]]:
        open_page(browser, server)
        blend = browser.execute_script(
            "return [...document.querySelectorAll('#voice-b option')].map(o => o.value)"
        )
        return browser.execute_script(VOICE_GROUPS), blend

    groups, blend_options = await asyncio.to_thread(read)
    assert [g[0] for g in groups] == list(expected), "one group per language, in catalog order"
    assert dict(groups) == expected
    assert blend_options == ["", *[v["id"] for v in catalog]]


async def test_speak_plays_highlights_in_order_and_downloads(browser, server):
    def run() -> tuple[dict, str, int, str]:
        from selenium.webdriver.support.ui import Select

        script_errors(browser)
        open_page(browser, server)
        Select(browser.find_element("id", "voice-a")).select_by_value("af_heart")
        Select(browser.find_element("id", "voice-b")).select_by_value("af_bella")
        browser.execute_script(  # the slider as a user leaves it: 70 % of the first voice
            "const m = document.getElementById('mix'); m.value = 70;"
            "m.dispatchEvent(new Event('input', {bubbles: true}));"
        )
        browser.execute_script("document.getElementById('text').value = arguments[0]", TEXT)
        spec = text_of(browser, "voice-spec-value")
        result = speak_and_watch(browser, screenshot="audition-page.png")
        wait_for(browser, lambda d: "Received" in text_of(d, "status"))
        result["console"] = script_errors(browser)
        return result, spec, download_size(browser), text_of(browser, "health")

    result, spec, size, health = await asyncio.to_thread(run)
    assert result["console"] == [], "no script errors"
    assert spec == "af_heart(70)+af_bella(30)"
    assert_played_and_followed(result)
    assert result["screenshot"] is not None, "no moment with a word lit after 2 s of audio"
    print(f"screenshot: {result['screenshot']}")
    assert size > 10_000, "the download holds the mp3 that was played"
    assert health.startswith("Server: ready")


async def test_invalid_voice_shows_the_servers_message(browser, server, http):
    body = {"model": "kokoro", "input": "Hello.", "voice": "xx_nobody", "stream": True}
    async with http.post(server + "/dev/captioned_speech", json=body) as r:
        assert r.status == 400
        expected = (await r.json())["error"]["message"]

    def run() -> str:
        from selenium.webdriver.common.by import By

        open_page(browser, server)
        browser.execute_script(  # a voice the catalog no longer has (a stale page)
            "const s = document.getElementById('voice-a');"
            "s.append(new Option('xx_nobody', 'xx_nobody')); s.value = 'xx_nobody';"
            "s.dispatchEvent(new Event('input', {bubbles: true}));"
        )
        browser.find_element(By.ID, "speak").click()
        return wait_for(browser, lambda d: text_of(d, "error"), message="no error shown")

    shown = await asyncio.to_thread(run)
    assert shown == expected
    assert "xx_nobody" in shown


async def test_controls_are_labelled_and_keyboard_reachable(browser, server):
    def run() -> tuple[list[str], list[str], str]:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        open_page(browser, server)
        unlabelled = browser.execute_script(
            "return [...document.querySelectorAll('input, select, textarea, button, audio')]"
            ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
            " && !(e.tagName === 'BUTTON' && e.textContent.trim())).map(e => e.id)"
        )
        # Tab from the top of the page until Speak has the focus
        browser.execute_script("document.activeElement.blur()")
        order = []
        for _ in range(20):
            ActionChains(browser).send_keys(Keys.TAB).perform()
            order.append(browser.switch_to.active_element.get_attribute("id"))
            if order[-1] == "speak":
                break
        outline = browser.execute_script(
            "const s = getComputedStyle(document.activeElement);"
            "return s.outlineStyle + ' ' + s.outlineWidth"
        )
        # Enter on the focused Speak button submits (with no text: the page says so)
        browser.execute_script("document.getElementById('text').value = ''")
        ActionChains(browser).send_keys(Keys.ENTER).perform()
        said = wait_for(browser, lambda d: text_of(d, "error"), message="Enter did nothing")
        return unlabelled, order, outline, said

    unlabelled, order, outline, said = await asyncio.to_thread(run)
    assert unlabelled == []
    assert order[-1] == "speak", order
    assert order.index("voice-a") < order.index("text") < order.index("speak"), order
    assert outline == "solid 3px", "keyboard focus is visible"
    assert said == "Type some text to speak."


async def test_with_an_api_key_the_page_asks_for_it_then_speaks(browser, keyed_server):
    def run() -> tuple[str, bool, dict, list]:
        from selenium.webdriver.common.by import By

        browser.get(keyed_server + "/")
        browser.execute_script(
            "document.getElementById('text').value = arguments[0]", "Hello, this is a short test."
        )
        voices = "return document.body.dataset.voices"
        wait_for(browser, lambda d: d.execute_script(voices) or text_of(d, "error"))
        if browser.execute_script(voices):  # the catalog is open: Speak meets the 401
            browser.find_element(By.ID, "speak").click()
        wait_for(browser, lambda d: d.find_element(By.ID, "key-form").is_displayed(),
                 message="the page never asked for the key")  # fmt: skip
        refused = wait_for(browser, lambda d: text_of(d, "error"))
        focused = browser.switch_to.active_element.get_attribute("id") == "api-key"
        browser.find_element(By.ID, "api-key").send_keys(KEY)
        browser.find_element(By.ID, "key-save").click()
        wait_for(browser, lambda d: d.execute_script(voices))
        result = speak_and_watch(browser)
        stores = browser.execute_script(
            "return [sessionStorage.getItem('fastkokoro.apiKey'),"
            " localStorage.getItem('fastkokoro.apiKey'),"
            " document.getElementById('key-form').hidden]"
        )
        return refused, focused, result, stores

    refused, focused, result, stores = await asyncio.to_thread(run)
    assert "API key" in refused  # the server's own 401 message
    assert focused, "the key field gets the focus"
    assert not result["error"], result["error"]
    assert max(t for t, _ in result["times"]) > 0.5, "audio played with the key"
    assert result["words"], "timestamps arrived with the key"
    assert stores == [KEY, None, True], "kept for this tab only, unless remembered"
