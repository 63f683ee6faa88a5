"""The HTML report as a reader sees it: opened in headless Chromium at 1400 px wide.

The browser is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``:
Chromium reads commands on fd 3 and writes answers on fd 4, each a JSON object ended by a NUL
byte), so the test needs Chromium and nothing else: no driver, no network port. CI installs
Debian's ``chromium`` (``.ci/run``); elsewhere the tests skip when no Chromium is found.

Checked on the smoke report: every image loads (non-zero natural width), the console stays free
of errors, the page never scrolls sideways, the claim matrix lies in the first viewport, and every
verdict and published number is visible without scrolling sideways. A screenshot of the first viewport is saved beside the copy of the report.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

WIDTH, HEIGHT = 1400, 900
# Headless, sandbox-free (containers), and quiet: no GPU, no network services, no first-run UI.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    """One headless Chromium, one page, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path):
        exe = chromium()
        if exe is None:
            pytest.skip("no Chromium on this machine (CI installs Debian's chromium)")
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def fds_3_and_4():
            # Chromium expects the pipe at fds 3 and 4 exactly; copy away first so neither copy clobbers the other.
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=fds_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self.events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: bool = False, timeout: float = 30.0, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params} | ({"sessionId": self.session} if session else {})
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            m = self._message(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")  # fires once every image has loaded or failed

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"]))

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e.get("method") == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text", "exception"))
            elif e.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._w)
        os.close(self._r)


def page_problems(browser: Browser, path: Path) -> list[str]:
    """What a reader would stumble on in the page at ``path``: broken images, console errors, sideways scrolling."""
    browser.open(path.resolve().as_uri())
    problems = []
    images = browser.evaluate("Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 60), i.naturalWidth])")
    problems += [f"image does not load: {src}" for src, w in images if not w]
    problems += [f"console error: {e}" for e in browser.console_errors()]
    wide = browser.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    if wide[0] > wide[1]:
        problems.append(f"the page scrolls sideways: {wide[0]} px of content in {wide[1]} px")
    return problems


# Columns a reader decides on: a verdict, and every published number (GM Table 3's verified errors).
DECIDING = "h === 'verdict' || h.endsWith('published')"


def hidden_deciding_cells(browser: Browser) -> list[str]:
    """Cells of a deciding column, or verdict chips, that lie past the right edge of the 1400 px viewport or
    of the box that scrolls them sideways: the reader would have to scroll to see them. Cells inside a
    folded <details> are not shown, so they are not counted; unfolding one is the reader's choice."""
    return browser.evaluate(
        "(() => { const out = [], width = document.documentElement.clientWidth;"
        " const clip = e => { let r = width; for (let p = e.parentElement; p; p = p.parentElement) {"
        "   const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') r = Math.min(r, p.getBoundingClientRect().right); }"
        "   return r; };"
        " const check = (e, what) => { if (!e.getClientRects().length || e.closest('details:not([open])')) return; const b = e.getBoundingClientRect();"
        "   if (b.right > clip(e) + 0.5) out.push(what + ': ' + e.textContent.trim().slice(0, 40) + ' ends at ' + Math.round(b.right) + ' px'); };"
        " for (const t of document.querySelectorAll('table')) {"
        "   const hs = Array.from(t.querySelectorAll('thead th')).map(h => h.textContent.trim());"
        f"   hs.forEach((h, i) => {{ if (!({DECIDING})) return; for (const r of t.querySelectorAll('tr')) {{"
        "     const c = r.cells[i]; if (c) check(c, h); } }); }"
        " document.querySelectorAll('#claims-matrix .chip').forEach(c => check(c, 'claim'));"
        " return out; })()"
    )


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="  # 1 x 1 pixel


def test_the_page_check_fails_on_a_broken_image_a_console_error_and_a_wide_page(browser, tmp_path):
    good = tmp_path / "good.html"
    good.write_text(f'<!doctype html><html><body><p>fine</p><img src="data:image/png;base64,{PNG}"></body></html>')
    assert page_problems(browser, good) == []
    bad = tmp_path / "bad.html"
    bad.write_text(
        f'<!doctype html><html><body><img src="data:image/png;base64,{PNG}"><img src="missing.png">'
        '<div style="width: 3000px">wide</div><script>console.error("boom")</script></body></html>'
    )
    problems = page_problems(browser, bad)
    assert any("image does not load: missing.png" in p for p in problems), problems
    assert any("console error: boom" in p for p in problems), problems
    assert any("scrolls sideways" in p for p in problems), problems


# --- the smoke report ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_report(workdir, smoke_run, tmp_path_factory, repo_root) -> Path:
    """The HTML report built from a copy of the session's smoke run (tests/conftest.py)."""
    from robrepro.config import load
    from robrepro.plan import Plan
    from robrepro.report import build, outputs

    dst = tmp_path_factory.mktemp("browser") / "results" / "smoke"
    shutil.copytree(workdir / "results" / "smoke", dst, ignore=shutil.ignore_patterns("*.pt", "report", "logs"))
    root = dst.parents[1]
    config = load(repo_root / "config" / "config.yaml", repo_root / "config" / "smoke.yaml")
    out = outputs(Plan(config).paths.root)
    build(config, out["html"], out["md"], root=root)
    return root / out["html"]


@pytest.mark.slow
def test_the_smoke_report_reads_well_in_a_browser(browser, smoke_report):
    assert page_problems(browser, smoke_report) == []
    assert browser.evaluate("document.images.length") > 0  # the figures are inline
    browser.screenshot(smoke_report.parent / "first-viewport.png")
    assert (smoke_report.parent / "first-viewport.png").stat().st_size > 0


def test_the_deciding_cell_check_fails_on_a_verdict_past_the_right_edge(browser, tmp_path):
    def page(verdict_at: int) -> Path:
        heads = "".join(f"<th>{'verdict' if i == verdict_at else 'x_published' if i == 3 else f'c{i}'}</th>" for i in range(20))
        cells = "".join(f'<td style="min-width:120px">{"masking suspected" if i == verdict_at else i}</td>' for i in range(20))
        path = tmp_path / f"verdict-{verdict_at}.html"
        path.write_text(
            f'<!doctype html><html><body><div style="overflow-x:auto"><table><thead><tr>{heads}</tr></thead><tbody><tr>{cells}</tr></tbody></table></div></body></html>'
        )
        return path

    browser.open(page(15).resolve().as_uri())
    assert browser.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")  # only the box scrolls
    assert any("verdict: masking suspected" in c for c in hidden_deciding_cells(browser))
    browser.open(page(1).resolve().as_uri())
    assert hidden_deciding_cells(browser) == []


@pytest.mark.slow
def test_every_verdict_and_published_number_is_visible_without_scrolling_sideways(browser, smoke_report):
    browser.open(smoke_report.resolve().as_uri())
    assert hidden_deciding_cells(browser) == []


@pytest.mark.slow
def test_the_claim_matrix_is_in_the_first_viewport(browser, smoke_report):
    browser.open(smoke_report.resolve().as_uri())
    box = browser.evaluate(
        "(() => { const e = document.getElementById('claims-matrix'); if (!e) return null; const r = e.getBoundingClientRect();"
        " return [r.top, r.bottom, r.right, document.documentElement.clientWidth]; })()"
    )
    assert box is not None, "no element with id 'claims-matrix'"
    top, bottom, right, width = box
    assert 0 <= top < HEIGHT and bottom > 0 and right <= width
