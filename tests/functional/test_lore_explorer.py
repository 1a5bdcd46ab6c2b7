"""The lore explorer in a real headless browser (Debian's chromium through its chromedriver, selenium)
against `kb serve` on the sample worlds: each view renders what the API holds, by keyboard too, and a
screenshot of each view is saved under docs/images/ for the README."""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.sample_worlds import Served

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()) or shutil.which("chromedriver") is None,
        reason="chromium and chromium-driver are not installed (make setup installs them: apt-get)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: Any, served: Served, route: str, ready: str) -> str:
    """Load the explorer at `route` for emberfall; wait until the view says it is ready; the view's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{served.site}?world=emberfall#{route}")
    WebDriverWait(browser, 90).until(
        lambda d: (
            d.find_element(By.ID, "view").get_attribute("data-ready") == ready
            and "Loading" not in d.find_element(By.ID, "status").text
        )
    )
    return str(browser.find_element(By.ID, "view").text)


def _screenshot(browser: Any, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(IMAGES / f"explorer-{name}.png"))


def _errors(browser: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#view .error")]


def test_search_highlights_passages_and_cites_them(browser: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By

    query = urllib.parse.quote("how is the fire tithe collected")
    text = _open(browser, served, f"/search?q={query}&k=3", "search")
    assert _errors(browser) == []
    assert "3 passages" in text
    assert "incoming/emberfall/02-the-fire-tithe.md [" in text  # a citation with its offsets
    marks = {m.text.lower() for m in browser.find_elements(By.CSS_SELECTOR, "#view mark")}
    assert {"tithe", "fire"} & marks
    world = browser.find_element(By.ID, "world")
    assert world.get_attribute("value") == "emberfall"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=world]").text == "World"
    _screenshot(browser, "search")


def test_search_by_keyboard_alone(browser: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, served, "/search", "search")
    box = browser.switch_to.active_element  # the query box has the focus when the view opens
    assert box.get_attribute("id") == "q"
    box.send_keys("who rules the Ember Court", Keys.ENTER)
    WebDriverWait(browser, 90).until(lambda d: "passages for" in d.find_element(By.ID, "view").text)
    assert "Ember Court" in browser.find_element(By.ID, "view").text


def test_concept_page_shows_versions_over_time_and_their_sources(browser: Any, served: Served) -> None:
    text = _open(browser, served, "/concept/Queen%20Ysolde%20Varr", "concept")
    assert _errors(browser) == []
    assert "Queen Ysolde Varr" in text and "Versions over time" in text
    assert "v1" in text and "v2" in text  # the document's version, then the story event's
    assert "The Ember Court (incoming/emberfall/01-the-ember-court.md)" in text
    assert "story event court:ash-2" in text
    assert "pardoned the salt smugglers" in text
    _screenshot(browser, "concept")


def test_concepts_list_links_each_concept(browser: Any, served: Served) -> None:
    text = _open(browser, served, "/concepts", "concepts")
    assert "Chancellor Merek Oss" in text and "Kharos Keep" in text and "edges" in text


def test_relationship_graph_around_a_concept(browser: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By

    text = _open(browser, served, "/graph/Ember%20Court?depth=1", "graph")
    assert _errors(browser) == []
    assert "Queen Ysolde Varr rules Ember Court" in text
    assert "Chancellor Merek Oss member of Ember Court" in text
    graph = browser.find_element(By.CSS_SELECTOR, "svg.graph")
    assert graph.get_attribute("aria-label") == "Relationship graph around Ember Court"
    labels = {t.text for t in graph.find_elements(By.TAG_NAME, "text")}
    assert {"Ember Court", "Queen Ysolde Varr", "rules"} <= labels
    _screenshot(browser, "graph")


def test_timeline_with_filters(browser: Any, served: Served) -> None:
    text = _open(browser, served, "/timeline", "timeline")
    assert _errors(browser) == []
    assert "2 of 2 events" in text
    assert "The heroes carried the tithe ledger to Kharos Keep." in text
    assert "2026-03-02 21:30 UTC ruling" in text
    text = _open(browser, served, "/timeline?since=2026-03-02T00%3A00&kind=&text=", "timeline")
    assert "1 of 1 events" in text and "tithe ledger" not in text
    text = _open(browser, served, "/timeline?since=&kind=quest_completed&text=", "timeline")
    assert "1 of 2 events" in text and "tithe ledger" in text
    _screenshot(browser, "timeline")


def test_context_pack_with_its_token_count(browser: Any, served: Served) -> None:
    situation = urllib.parse.quote("the heroes bring the fire tithe to the Ember Court")
    text = _open(browser, served, f"/context?situation={situation}&budget=600", "context")
    assert _errors(browser) == []
    (tokens,) = [line for line in text.splitlines() if line.endswith("/ 600 tokens")]
    assert 0 < int(tokens.split()[0]) <= 600
    assert "counted by" in text and "Passages (" in text and "Concepts (" in text
    _screenshot(browser, "context")


def test_an_unknown_world_in_the_address_falls_back_and_bad_input_shows_the_api_message(
    browser: Any, served: Served
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{served.site}?world=nowhere#/concepts")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.ID, "view").get_attribute("data-ready") == "concepts"
    )
    assert browser.find_element(By.ID, "world").get_attribute("value") in ("emberfall", "tidewatch")
    _open(browser, served, "/concept/Nobody%20At%20All", "concept")
    assert _errors(browser) == ["no concept 'Nobody At All' in world 'emberfall'"]
