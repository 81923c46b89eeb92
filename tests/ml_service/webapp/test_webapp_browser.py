"""The web app in a real browser: the OS's Chromium (Debian's chromium and chromium-driver,
which `make test` installs), headless, driven by Selenium, against the app served on this
machine and the real served model.

Each test saves a screenshot of the page it ends on to build/screenshots/ (SCREENSHOTS).
Model-agnostic: the fields and what the model answers come from the card and the endpoint.
"""
import csv
import io
import socket
import time
from pathlib import Path

import pytest

from ml_service.paths import PROJECT_ROOT
from ml_service.webapp import app as webapp
from tests.ml_service.webapp.conftest import endpoint_answers, serve, shown_value

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = PROJECT_ROOT / "build" / "screenshots"
UPLOAD_LIMIT = 20_000
WAIT_S = 15


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module, downloading into a folder of its own."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    assert not missing, (f"{', '.join(missing)} missing: install Debian's chromium and "
                         "chromium-driver (make test does)")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.downloads = downloads
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(served_model, model_card):
    url, server = serve(webapp.WebAppSettings(served_model.deployment.scoring_uri, model_card,
                                              max_upload_bytes=UPLOAD_LIMIT))
    yield url
    server.shutdown()


def shot(browser, name):
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def element(browser, css):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def elements(browser, css):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, css)


def endpoint_answer(served_model, card, row):
    return shown_value(endpoint_answers(served_model, card, [row])["result"][0])


def test_every_field_is_labelled_and_the_answer_is_the_endpoints(
        browser, site, card, served_model):
    browser.get(site + "/")
    inputs = elements(browser, "form input[name]")
    assert [i.get_attribute("name") for i in inputs] == [f["name"] for f in card["fields"]]
    for field in inputs:
        label = elements(browser, f'label[for="{field.get_attribute("id")}"]')
        assert len(label) == 1 and label[0].text == field.get_attribute("name")
    first = inputs[0]
    first.clear()
    first.send_keys("0.05")
    row = [float(i.get_attribute("value")) for i in inputs]
    element(browser, "form button[type=submit]").click()
    shown = element(browser, "output#prediction").text
    assert float(shown) == pytest.approx(endpoint_answer(served_model, card, row), rel=1e-12)
    assert element(browser, "section.answer").get_attribute("aria-live") == "polite"
    shot(browser, "try-it")


def test_a_wrong_value_is_announced_next_to_its_field(browser, site):
    browser.get(site + "/")
    second = elements(browser, "form input[name]")[1]
    name = second.get_attribute("name")
    second.clear()
    second.send_keys("a lot")
    element(browser, "form button[type=submit]").click()
    # the answer is a new page: wait for it rather than read the old one's field
    field = element(browser, "form input[aria-invalid=true]")
    assert field.get_attribute("name") == name
    assert [f.get_attribute("name") for f in elements(browser, "form input[aria-invalid]")] \
        == [name]
    message = element(browser, "#" + field.get_attribute("aria-describedby"))
    assert message.get_attribute("role") == "alert"
    assert message.text == "'a lot' is not a number"
    # the message sits in the field's own box, right under it
    assert message.find_element("xpath", "..") == field.find_element("xpath", "..")
    shot(browser, "try-it-error")


def wait_for_download(folder: Path, name: str) -> Path:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = folder / name
        if found.is_file() and not list(folder.glob("*.crdownload")):
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {name} in {folder}: {sorted(p.name for p in folder.iterdir())}")


def test_an_uploaded_file_comes_back_scored(browser, site, card, served_model, tmp_path):
    names = [f["name"] for f in card["fields"]]
    rows = [[f["example"] for f in card["fields"]], [0] * len(names), [1] * len(names)]
    upload = tmp_path / "cases.csv"
    with upload.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", *names])
        writer.writerows([[index, *row] for index, row in enumerate(rows)])
    browser.get(site + "/file")
    shot(browser, "score-a-file")
    element(browser, "input#file").send_keys(str(upload))
    element(browser, "form button[type=submit]").click()
    scored = list(csv.DictReader(io.StringIO(
        wait_for_download(browser.downloads, "cases-scored.csv").read_text())))
    assert [row["id"] for row in scored] == ["0", "1", "2"]
    for row, written in zip(rows, scored):
        expected = endpoint_answer(served_model, card, [float(v) for v in row])
        assert float(written["prediction"]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("content, message", [
    ("wrong,columns\n1,2\n", "is missing (the header row has wrong, columns)"),
    (None, "Row 3, column"),
    ("x" * (UPLOAD_LIMIT + 1), f"the limit is {UPLOAD_LIMIT:,}"),
], ids=["columns", "value", "size"])
def test_a_bad_file_gets_a_message_naming_what_to_fix(browser, site, card, tmp_path, content,
                                                      message, request):
    names = [f["name"] for f in card["fields"]]
    if content is None:
        content = ",".join(names) + "\n" + ",".join(["1"] * len(names)) + "\n" \
            + ",".join(["many"] + ["1"] * (len(names) - 1)) + "\n"
    upload = tmp_path / "bad.csv"
    upload.write_text(content)
    browser.get(site + "/file")
    element(browser, "input#file").send_keys(str(upload))
    element(browser, "form button[type=submit]").click()
    problem = element(browser, "p.problem[role=alert]")
    assert message in problem.text
    assert element(browser, "input#file").get_attribute("aria-describedby") == "problem"
    shot(browser, f"score-a-file-error-{request.node.callspec.id}")


def test_an_endpoint_that_is_down_is_said_in_plain_words(browser, model_card):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url, server = serve(webapp.WebAppSettings(f"http://127.0.0.1:{port}/score", model_card))
    try:
        browser.get(url + "/")
        element(browser, "form button[type=submit]").click()
        problem = element(browser, "p.problem[role=alert]")
        assert problem.text == ("The scoring service cannot be reached right now. Check that "
                                "it is deployed and running, then try again.")
        shot(browser, "try-it-endpoint-down")
    finally:
        server.shutdown()


def test_the_model_card_shows_the_model_its_metrics_and_pictures(browser, site, card):
    browser.get(site + "/model")
    assert element(browser, "#card-version").text == str(card["version"])
    shown = {row.find_elements("css selector", "td")[0].text
             for row in elements(browser, "table tbody tr")}
    assert shown == set(card["metrics"])
    pictures = elements(browser, "figure img")
    assert len(pictures) == len(card["evaluation"]["pictures"])
    for picture in pictures:
        assert picture.get_attribute("alt")
        assert browser.execute_script("return arguments[0].complete && "
                                      "arguments[0].naturalWidth > 0", picture)
    shot(browser, "model-card")
