"""The playground page at ``/`` in a real browser: Debian's headless Chromium, driven
through Debian's chromedriver by Selenium (nothing downloads a browser), against a
real ``thinkling serve`` of the Gemma student on loopback with an API key.

Also, without a browser: the page's files and their headers, the key and Host rules."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from test_server import KEY, _clean_env, start_server, stop_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Where to keep a screenshot of the page after the run (docs/playground.png was made so).
SHOT_ENV = "THINKLING_PLAYGROUND_SHOT"
STUDENT = "gemma-3-270m-arith"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("playground") / "server.log"
    srv = start_server(log, "--model", STUDENT, "--max-tokens-cap", "256",
                       env={**_clean_env(), "THINKLING_API_KEY": KEY})
    yield srv
    stop_server(srv)


def test_page_and_assets_are_served_without_a_key_with_strict_headers(server):
    page = httpx.get(server.url + "/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "/playground/app.js" in page.text and "http" not in page.text.replace("http-equiv", "")  # no CDN
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = httpx.get(f"{server.url}/playground/{name}", timeout=30)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    escaped = httpx.get(server.url + "/playground/%2e%2e%2fsettings.py", timeout=30)
    assert escaped.status_code in (401, 404) and "ServerSettings" not in escaped.text
    assert httpx.get(server.url + "/playground/secret.txt", timeout=30).status_code == 401  # not a page file
    other = httpx.get(server.url + "/playground/secret.txt", headers=server.auth, timeout=30)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"


def test_the_api_behind_the_page_still_needs_the_key_and_host_rules_apply(server):
    assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 401
    r = httpx.get(server.url + "/", headers={"Host": "evil.example"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"


@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver; .ci/run installs them where it can)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def test_a_person_sees_the_student_think_in_every_mode(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser
    d.get(server.url + "/")
    d.find_element(By.ID, "key").send_keys(KEY)
    d.execute_script("document.getElementById('key').dispatchEvent(new Event('change'))")
    _wait(d, lambda d: [o.text for o in Select(d.find_element(By.ID, "model")).options] == [STUDENT])
    seen = {}
    for i, (think, question) in enumerate([("off", "What is 7 + 5?"), ("on", "What is 23 + 4 * 5?"),
                                           ("post", "What is 60 - 7 * 3?"), ("auto", "What is 31 + 8 * 6 - 5?")]):
        Select(d.find_element(By.ID, "think")).select_by_value(think)
        box = d.find_element(By.ID, "prompt")
        box.clear()
        box.send_keys(question)
        d.find_element(By.ID, "send").click()
        turn = _wait(d, lambda d: (t := d.find_elements(By.CSS_SELECTOR, ".turn")) and len(t) > i
                     and t[i].get_attribute("data-finish") and t[i])
        assert turn.get_attribute("data-finish") == "stop", turn.text
        answer = turn.find_element(By.CSS_SELECTOR, ".answer").text
        reasoning = turn.find_element(By.CSS_SELECTOR, ".reasoning")
        decision = dict(zip([e.text for e in turn.find_elements(By.CSS_SELECTOR, ".decision dt")],
                            [e.text for e in turn.find_elements(By.CSS_SELECTOR, ".decision dd")]))
        timings = [e.text for e in turn.find_elements(By.CSS_SELECTOR, ".timings dt")]
        assert answer.strip().isdigit(), answer
        assert decision["requested"] == think and decision["why"], decision
        assert {"TTFT", "total"} <= set(timings), timings
        shown = reasoning.get_attribute("hidden") is None
        seen[think] = (decision["mode"], shown)
        if decision["mode"] == "on":
            assert shown  # the chain is there, collapsed: a click opens it
            reasoning.find_element(By.TAG_NAME, "summary").click()
            assert "=" in reasoning.find_element(By.TAG_NAME, "pre").text
        if think == "auto":
            assert decision["stage"] in ("gate", "probe")
    assert seen["off"] == ("off", False) and seen["on"] == ("on", True)
    assert seen["post"][0] == "post"
    if os.environ.get(SHOT_ENV):
        shot = Path(os.environ[SHOT_ENV])
        tmp = shot.with_name(shot.name + ".tmp.png")
        d.save_screenshot(str(tmp))
        os.replace(tmp, shot)
