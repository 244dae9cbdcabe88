"""The notebooks' live controls work in a real browser: JupyterLab in headless Chromium runs a notebook, a control
is changed the way a student changes it (a key press, a pick from a list) and the picture below the panel is redrawn;
a bad value typed into a box shows a message beside the controls while the last good picture stays.

This is what the unit tests of frcnn_edu.controls cannot show: that the widget front end sends a change to the kernel
on Enter or on a pick, and that the display-id update reaches the image output already on the page.

Two notebooks: a small scratch one built here (the mechanism, quick on any machine with Chromium) and the course's
04_anchors.ipynb (its anchor sizes box). Both run on copies in tmp_path, so the checkout's notebooks never change.
Needs the Debian packages chromium and chromium-driver (skipped, saying so, without them); `.ci/run` installs them.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow  # a server, a browser and a kernel: 15-50 s a test

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
INSTALL_HINT = "install them with `apt-get install chromium chromium-driver` (Debian; `.ci/run` does it)"

SERVER_START_S = 90  # JupyterLab's first start on a busy 2-core machine takes 10-30 s
OPEN_S = 90  # the page, its extensions and a started kernel
REDRAW_S = 60  # one change: the comm message, a redraw in the kernel, the display update back

# The scratch notebook: a check that the kernel is this Python (the python3 kernelspec that JupyterLab picks is the
# project's), then a panel whose draw is cheap, so that the test measures the round trip rather than matplotlib.
SCRATCH_SOURCE = '''\
import sys
assert sys.prefix == {prefix!r}, f"the kernel is not the project's Python: {{sys.executable}}"
'''
SCRATCH_PANEL = '''\
import matplotlib.pyplot as plt
from frcnn_edu import controls

def squares(sizes, stride):
    values = controls.parse_numbers(sizes, "sizes (px)")  # 'abc' raises ValueError: the message line shows it
    fig, ax = plt.subplots(figsize=(3, 2))
    for v in values:
        ax.add_patch(plt.Rectangle((0, 0), v, v, fill=False))
    ax.set(xlim=(0, 600), ylim=(0, 600), title=f"stride {stride}")
    return fig

panel = controls.LiveFigure(squares, sizes=controls.numbers_box((128, 256), "sizes (px)"),
                            stride=controls.choice([8, 16, 32], 16, "stride"))
panel.show()
'''

# The src of the picture a panel updates: the first <img> in the outputs after the panel's own, in the same cell.
# Looked up afresh each time (in the page, not as a held element): an update re-renders the output.
PICTURE_JS = """
const panel = document.querySelectorAll('.frcnn-edu-controls')[arguments[0]];
if (!panel) return null;
let output = panel.closest('.jp-OutputArea-child');
for (output = output && output.nextElementSibling; output; output = output.nextElementSibling) {
    const img = output.querySelector('img');
    if (img) return img.getAttribute('src');
}
return null;
"""

# Open the notebook, wait for its kernel, run every cell (the promise settles when the last reply is in), then wait
# for the kernel to go idle. Resolves to the error outputs, so a failing cell fails the test with its own message.
RUN_ALL_JS = """
const [path, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
    const app = window.jupyterapp;
    await app.restored;
    const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
    await panel.context.ready;
    await panel.sessionContext.ready;
    if (!panel.sessionContext.session || !panel.sessionContext.session.kernel)
        throw new Error('no kernel started for ' + path + ' (kernel picker shown?)');
    app.shell.activateById(panel.id);
    await app.commands.execute('notebook:run-all-cells');
    const kernel = panel.sessionContext.session.kernel;
    while (kernel.status !== 'idle') {
        if (['dead', 'autorestarting'].includes(kernel.status)) throw new Error('the kernel died (out of memory?)');
        await new Promise(r => setTimeout(r, 100));
    }
    const errors = [];
    for (const cell of panel.content.model.cells) {
        if (cell.type !== 'code') continue;
        for (const output of cell.outputs.toJSON())
            if (output.output_type === 'error')
                errors.push(output.ename + ': ' + output.evalue + '\\nin cell:\\n' + cell.sharedModel.getSource());
    }
    return {errors};
})().then(done, error => done({failure: String(error)}));
"""


def find_browser() -> tuple[str, str]:
    """Chromium and its driver, or a skip naming what is missing and how to get it."""
    if importlib.util.find_spec("selenium") is None:
        pytest.skip("needs selenium (a dev dependency): `pip install -r requirements.lock` or `make venv`")
    found = {name: shutil.which(name) for name in ("chromium", "chromedriver")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} on PATH: {INSTALL_HINT}")
    return found["chromium"], found["chromedriver"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


class Lab:
    """A JupyterLab server on a free local port serving `root`, with its log in `log`."""

    def __init__(self, root: Path, state: Path):
        self.root, self.port, self.token = root, free_port(), secrets.token_hex(16)
        self.log = state / "jupyterlab.log"
        config = state / "config"
        # Test settings, not the user's: every cell kept in the page (windowing would detach off-screen outputs),
        # no news or update pop-ups over the notebook (there is no internet to fetch them from anyway).
        settings = config / "lab" / "user-settings" / "@jupyterlab"
        (settings / "notebook-extension").mkdir(parents=True)
        (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
            json.dumps({"windowingMode": "none"}))
        (settings / "apputils-extension").mkdir(parents=True)
        (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = dict(os.environ)
        # as `make test` exports them, so a plain pytest run gives the notebook the same data
        env.setdefault("FRCNN_EDU_HOME", str(REPO / "runs" / "cache"))
        env.setdefault("FRCNN_EDU_VOC_FIXTURE", str(REPO.parent / "shared" / "voc-fixture" / "VOCdevkit"))
        # The user's Jupyter folders are left out: a kernelspec named python3 there would win over the project's
        # (.venv's, installed with --sys-prefix, still found under sys.prefix), and no runtime files land in $HOME.
        env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(state / "data"),
                   JUPYTER_RUNTIME_DIR=str(state / "runtime"), PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.open_browser=False",
                   "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
                   "--LabApp.expose_app_in_browser=True"]
        if os.geteuid() == 0:  # CI runs as root
            command.append("--allow-root")
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self._log_file, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {self.process.returncode}:\n{tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        pytest.fail(f"JupyterLab did not answer on port {self.port} within {SERVER_START_S} s:\n{tail(self.log)}")

    def stop(self) -> None:
        # SIGTERM: the server shuts its kernels down before exiting (a kill would leave them running)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log_file.close()


@pytest.fixture
def lab(tmp_path):
    root, state = tmp_path / "notebooks", tmp_path / "jupyter"
    root.mkdir()
    state.mkdir()
    server = Lab(root, state)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(tmp_path):
    chromium, chromedriver = find_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium  # with both paths given, selenium does not look for a browser to download
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def run_notebook(lab: Lab, driver, notebook: Path, budget_s: float) -> None:
    """Open a copy of `notebook` in JupyterLab and run all its cells; fails on an error output or a dead kernel."""
    shutil.copyfile(notebook, lab.root / notebook.name)
    driver.get(f"{lab.url}/lab?token={lab.token}")
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, OPEN_S).until(lambda d: d.execute_script("return !!window.jupyterapp"))
    except TimeoutException:
        pytest.fail(f"JupyterLab's page did not load within {OPEN_S} s (window.jupyterapp missing):\n{tail(lab.log)}")
    driver.set_script_timeout(OPEN_S + budget_s)
    try:
        result = driver.execute_async_script(RUN_ALL_JS, notebook.name)
    except TimeoutException:
        pytest.fail(f"{notebook.name}: not run within {OPEN_S + budget_s:.0f} s:\n{tail(lab.log)}")
    assert "failure" not in result, f"{notebook.name}: {result.get('failure')}\n{tail(lab.log)}"
    assert not result["errors"], f"{notebook.name} raised:\n" + "\n\n".join(result["errors"])


def wait_for(driver, condition, timeout: float, what: str):
    """condition(driver)'s first truthy value within timeout, else a failure saying what did not happen."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        pytest.fail(f"{what} within {timeout:.0f} s")


def picture(driver, index: int = 0) -> str | None:
    return driver.execute_script(PICTURE_JS, index)


def message(driver, index: int = 0) -> str:
    return driver.execute_script(
        "const m = document.querySelectorAll('.frcnn-edu-controls')[arguments[0]]"
        "    .querySelector('.frcnn-edu-message'); return m ? m.textContent.trim() : null;", index)


def first_panel(driver, notebook: str, timeout: float):
    """The first live-control panel on the page and its picture's src, once both are rendered."""
    from selenium.webdriver.common.by import By

    panels = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".frcnn-edu-controls"), timeout,
                      f"{notebook}: no live-control panel (.frcnn-edu-controls) rendered after running all cells")
    src = wait_for(driver, lambda d: picture(d), timeout,
                   f"{notebook}: no picture (an <img> output) after the first panel's output")
    # a plain image output (LiveFigure draws PNG, or JPEG for photos), not widget state
    assert src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), \
        f"the panel's picture is not a plain image output: {src[:60]}"
    return panels[0], src


def type_into(box, text: str) -> None:
    """Replace a text box's content and press Enter, as a student does (select all, type over it)."""
    from selenium.webdriver.common.keys import Keys

    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(text, Keys.ENTER)


def expect_redraw(driver, before: str, what: str) -> str:
    """Waits for the picture to differ from `before`; returns the new src. A good change clears the message (the
    panel clears it before it updates the picture), so a message seen later comes from a later change."""
    after = wait_for(driver, lambda d: (src := picture(d)) not in (None, before) and src, REDRAW_S,
                     f"the picture did not change after {what}")
    assert message(driver) == "", f"a message after a good value ({what}): {message(driver)!r}"
    return after


def expect_message_and_same_picture(driver, box, bad: str, good_picture: str) -> None:
    type_into(box, bad)
    text = wait_for(driver, lambda d: message(d), REDRAW_S, f"no message beside the controls after typing {bad!r}")
    # the message comes from the redraw that failed, so by now a replaced picture would show
    assert picture(driver) == good_picture, f"the picture changed on a bad value {bad!r} (message: {text!r})"
    assert box.get_attribute("value") == bad  # the student's text stays in the box, beside its message


def test_scratch_panel_redraws_on_a_pick_and_on_enter_and_keeps_the_picture_on_a_bad_value(browser, lab, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    notebook = tmp_path / "live_controls.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(SCRATCH_SOURCE.format(prefix=sys.prefix)),
                nbformat.v4.new_code_cell(SCRATCH_PANEL)]
    nbformat.write(nb, notebook)
    run_notebook(lab, browser, notebook, budget_s=120)
    panel, start = first_panel(browser, notebook.name, REDRAW_S)

    stride = Select(panel.find_element(By.CSS_SELECTOR, "select"))
    assert stride.first_selected_option.text == "16"
    stride.select_by_visible_text("32")
    picked = expect_redraw(browser, start, "picking stride 32")

    sizes = panel.find_element(By.CSS_SELECTOR, "input[type=text]")
    type_into(sizes, "32, 64")
    typed = expect_redraw(browser, picked, "typing '32, 64' and Enter")

    expect_message_and_same_picture(browser, sizes, "abc", typed)
    assert "abc" in message(browser)  # parse_numbers quotes the text it could not read


def test_notebook_04_anchor_sizes_box_redraws_on_enter_and_keeps_the_picture_on_a_bad_value(browser, lab):
    """The course's anchors panel, as a student meets it after running the notebook: its first box (the sizes)."""
    from selenium.webdriver.common.by import By

    notebook = NOTEBOOKS / "04_anchors.ipynb"
    run_notebook(lab, browser, notebook, budget_s=240)
    panel, start = first_panel(browser, notebook.name, REDRAW_S)
    sizes = panel.find_element(By.CSS_SELECTOR, "input[type=text]")  # the first box: the anchor sizes
    assert sizes.get_attribute("value") != "32, 64"  # else the change below would change nothing
    type_into(sizes, "32, 64")
    typed = expect_redraw(browser, start, "typing anchor sizes '32, 64' and Enter")
    expect_message_and_same_picture(browser, sizes, "abc", typed)
