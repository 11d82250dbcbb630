"""vae-explore in a real browser: headless Chromium driven by Selenium on the page the server sends.

Runs on the shipped pretrained:mnist run, a freshly trained conv run (latent 4: the PCA view) and
the conditional run. Skipped, with the reason, only when Chromium, chromedriver or Selenium is
missing; CI installs them. Screenshots go under pytest's tmp folder; with
VAE_EXPLORE_SCREENSHOT=docs/explore.png the pretrained run's screenshot is also saved there
(how docs/explore.png is made).
"""

import os
import shlex
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from vae_cli.explore.server import bind, load_space

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT = 60  # seconds: a loaded 2-core machine can be slow; every wait ends as soon as its condition holds

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"headless browser tests need {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="vae-explore-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _serve(run: str):
    server = bind("127.0.0.1", 0)
    server.attach(load_space(run))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def pretrained_server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # the cached copy of the shipped run goes under tmp
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        server = _serve("pretrained:mnist")
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def conv_server(tmp_path_factory):
    """A fresh conv run with a 4-D latent, trained by vae-train for one short epoch."""
    from vae_cli.cli.train import main as train

    out = tmp_path_factory.mktemp("conv-run")
    assert train(["--dataset", "mnist-5k", "--arch", "conv", "--conv-filters", "8,8", "--hidden-dim", "32",
                  "--latent-dim", "4", "--epochs", "1", "--seed", "0", "--out", str(out)]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    server = _serve(str(run))
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cond_server(cond_run):
    server = _serve(str(cond_run))
    yield server
    server.shutdown()
    server.server_close()


def open_page(browser, server):
    browser.get(server.url)
    WebDriverWait(browser, WAIT).until(lambda b: b.execute_script("return document.body.dataset.ready") == "true")
    assert not browser.find_element(By.ID, "error").is_displayed()
    return browser.execute_script("return state.info")


def decoded_src(browser) -> str:
    return browser.find_element(By.ID, "decoded").get_attribute("src")


def z_text(browser) -> str:
    return browser.find_element(By.ID, "z-text").get_attribute("value")


def wait_for_new(browser, read, old):
    WebDriverWait(browser, WAIT).until(lambda b: read(b) != old and not b.execute_script("return state.busy"))
    return read(browser)


def parse_z(text: str) -> tuple[list[str], np.ndarray]:
    """The z text's words, and its z."""
    words = shlex.split(text)
    z = next(w for w in words if w.startswith("--z="))
    return words, np.array([float(v) for v in z[len("--z="):].split(",")])


def move_slider(browser, unit: int, key) -> None:
    slider = browser.find_element(By.CSS_SELECTOR, f"#sliders input[data-unit='{unit}']")
    slider.click()
    slider.send_keys(key)


def click_dot(browser, point) -> None:
    """Click the scatter's dot for info's `point` and wait for its image to be decoded."""
    x, y, label, index = point
    cx, cy = browser.execute_script("return toCanvas(arguments[0])", [x, y])
    canvas = browser.find_element(By.ID, "scatter")
    before_src = decoded_src(browser)
    webdriver.ActionChains(browser).move_to_element_with_offset(
        canvas, cx - canvas.size["width"] / 2, cy - canvas.size["height"] / 2).click().perform()
    WebDriverWait(browser, WAIT).until(
        lambda b: f"held-out {index}," in b.find_element(By.ID, "nearest-caption").text)
    wait_for_new(browser, decoded_src, before_src)
    _, z = parse_z(z_text(browser))
    assert z == pytest.approx([x, y], abs=2e-4)
    assert "distance 0.00" in browser.find_element(By.ID, "nearest-caption").text
    assert browser.find_element(By.ID, "status").text == f"held-out image {index} (label {label})"


def no_console_errors(browser):
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def screenshot(browser, tmp_path, name: str) -> Path:
    path = tmp_path / name
    assert browser.save_screenshot(str(path))
    return path


def test_pretrained_run_slider_scatter_strip_and_z_text(browser, pretrained_server, tmp_path):
    info = open_page(browser, pretrained_server)
    assert info["run"] == "pretrained:mnist" and info["latent_dim"] == 2
    assert browser.find_element(By.ID, "decoded").get_attribute("naturalWidth") == "28"
    sliders = browser.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")
    assert [int(s.get_attribute("data-unit")) for s in sliders] == info["unit_order"]

    # a slider moved to its end changes the image, the z text and nothing else of z
    before_src, before_text = decoded_src(browser), z_text(browser)
    unit = info["unit_order"][0]
    move_slider(browser, unit, Keys.END)
    after_src = wait_for_new(browser, decoded_src, before_src)
    words, z = parse_z(z_text(browser))
    _, z_before = parse_z(before_text)
    assert after_src != before_src and z[unit] == pytest.approx(info["slider_range"][unit])
    assert np.delete(z, unit) == pytest.approx(np.delete(z_before, unit))
    assert words[:2] == ["vae-sample", "pretrained:mnist"]

    # clicking a dot decodes that held-out image's code; the nearest real image is that image.
    # Two dots of different classes, far apart, become A and B: a strip of `steps` images.
    points = info["points"]
    first = points[len(points) // 2]
    second = max((p for p in points if p[2] != first[2]), key=lambda p: (p[0] - first[0]) ** 2 + (p[1] - first[1]) ** 2)
    for point, button in ((first, "set-a"), (second, "set-b")):
        click_dot(browser, point)
        browser.find_element(By.ID, button).click()
    WebDriverWait(browser, WAIT).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#strip img")) == 10)
    strip = [img.get_attribute("src") for img in browser.find_elements(By.CSS_SELECTOR, "#strip img")]
    assert len(set(strip)) > 1
    no_console_errors(browser)

    shot = screenshot(browser, tmp_path, "explore-pretrained.png")
    if os.environ.get("VAE_EXPLORE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["VAE_EXPLORE_SCREENSHOT"])


def test_z_text_is_a_working_vae_sample_command(browser, pretrained_server, tmp_path, monkeypatch):
    from PIL import Image

    from vae_cli.cli.sample import main as sample

    open_page(browser, pretrained_server)
    words, z = parse_z(z_text(browser))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert sample([*words[1:], "--out", str(tmp_path / "out")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "out" / "z.npy")[0], z, atol=1e-6)
    page_image = browser.execute_script("return document.getElementById('decoded').src")
    import base64
    import io

    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(page_image.split(",", 1)[1]))), np.float32) / 255
    sampled = np.load(tmp_path / "out" / "samples.npy")[0, ..., 0]
    np.testing.assert_allclose(shown, sampled, atol=2 / 255)  # the page showed what vae-sample writes


def test_fresh_conv_run_pca_view(browser, conv_server, tmp_path):
    info = open_page(browser, conv_server)
    assert info["arch"] == "conv" and info["latent_dim"] == 4
    assert browser.find_element(By.ID, "view-name").text.startswith("PCA of z_mean")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")) == 4
    before_src, before_text = decoded_src(browser), z_text(browser)
    move_slider(browser, info["unit_order"][0], Keys.HOME)
    wait_for_new(browser, decoded_src, before_src)
    words, z = parse_z(z_text(browser))
    assert len(z) == 4 and z_text(browser) != before_text
    # a click on empty canvas decodes that point of the PCA plane
    canvas = browser.find_element(By.ID, "scatter")
    before_src = decoded_src(browser)
    webdriver.ActionChains(browser).move_to_element_with_offset(canvas, -canvas.size["width"] / 2 + 3,
                                                                -canvas.size["height"] / 2 + 3).click().perform()
    wait_for_new(browser, decoded_src, before_src)
    _, clicked = parse_z(z_text(browser))
    origin, axes = np.array(info["origin"]), np.array(info["axes"])
    residual = (clicked - origin) - ((clicked - origin) @ axes.T) @ axes  # the point lies on the plane
    assert np.abs(residual).max() < 1e-3
    no_console_errors(browser)
    screenshot(browser, tmp_path, "explore-conv.png")


def test_conditional_run_class_switch(browser, cond_server, tmp_path):
    info = open_page(browser, cond_server)
    assert info["conditional"] and info["num_classes"] == 10
    select = Select(browser.find_element(By.ID, "class-select"))
    assert len(select.options) == 10 and select.first_selected_option.get_attribute("value") == "0"
    assert z_text(browser).endswith("--label 0")
    before_src = decoded_src(browser)
    select.select_by_value("7")
    after_src = wait_for_new(browser, decoded_src, before_src)
    assert after_src != before_src and z_text(browser).endswith("--label 7")
    WebDriverWait(browser, WAIT).until(lambda b: ", label 7," in b.find_element(By.ID, "nearest-caption").text)
    no_console_errors(browser)
    screenshot(browser, tmp_path, "explore-conditional.png")
