"""`make docs-check`: the built course site, opened in a real browser (headless Chromium), as a reader would.

The site (`make docs`'s output) is served by `python -m http.server` on 127.0.0.1, and Chromium, driven over the
Chrome DevTools Protocol (its websocket, with the websocket-client package; no browser download), opens:

- the home page: its title, and the sidebar in course order (the course map, every lesson, the homework, the
  user guide, the reference);
- lesson 03: every `<img>` of the page loaded (`naturalWidth > 0`), as many figures as the notebook's committed PNG
  outputs, and every "check yourself" answer block collapsed (a `<details>` that is closed, its answers not shown);
  then the same page on a phone-sized screen;
- lesson 01: its formulas drawn (MathML, no script from a CDN);
- two reference pages: every Config group with its fields (`--clip-coef`), every metric of `sandbox.metrics` in
  the metrics table;
- the search page, searching `first_ratio_dev`: the metrics page is among the results;
- the site as a student reads it (READER_PAGES: the home page, lessons 03 and 09, the homework page, the instructor
  notes, hw1), each at a laptop's 1280 px and a phone's 390 px: no table, code block, output or formula cut at the
  text column's edge (:func:`layout_problems`: content wider than its box, hidden behind a sideways scroll or
  clipped; an element whose right edge passes the column's, or the screen's for a table the site widened into the
  margin; a page wider than the screen; a display formula off the column's middle), and every image with alt text
  that says what it shows (:func:`image_problems`: not empty, not a file name or a hash).

On every page: no request answered with an error or failed, no request to any host but the local server, no
JavaScript error. Each page's screenshot is written to --screenshots. One line per check, then "N passed, M failed";
exit code 0 when all passed, 1 otherwise, 2 for bad input (no site, no browser to be had). `--all-pages` runs the
reader's checks on every page of the site instead (about a minute).

Chromium is Debian's package; when it is missing, this installs it (`apt-get install -y chromium`, as root).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]
DESKTOP = (1280, 900)
PHONE = (390, 844)
# the pages a student reads most, checked at both widths: the commands, tables and formulas that were cut before
READER_PAGES = {
    "home": "/docs/index.html",
    "lesson 03": "/notebooks/03_dropout_and_the_ratio.html",
    "lesson 09": "/notebooks/09_when_does_dropout_help.html",
    "homework": "/docs/homework.html",
    "instructor notes": "/notebooks/homework/README.html",
    "hw1": "/notebooks/homework/hw1_gae.html",
}
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
from sandbox_site import alt_problem  # noqa: E402  the site's own rule for alt text (make docs warns with it too)

# In the page: what of the text column a reader cannot see. Every element of the article (the theme's sidebars and
# header are not the student's text) that (1) holds content wider than its box behind a sideways scroll or a clip
# (overflow not visible, scrollWidth > clientWidth), or (2) reaches past the right edge it may use: the column's
# content edge, or the screen's for a box the site widened into the margin (.sandbox-wide, site.js). Only the
# outermost element of each problem is named; visually hidden elements (1 px boxes) are left out.
LAYOUT_JS = r"""(async () => {
  await document.fonts.ready;  // the layout settled: fonts in, and two frames for site.js's re-fit after a resize
  await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const style = getComputedStyle(article);
  const column = article.getBoundingClientRect().right - parseFloat(style.paddingRight);
  const screen = document.documentElement.clientWidth;
  const describe = e => {
    const classes = Array.from(e.classList).slice(0, 2);
    const tag = [e.tagName.toLowerCase(), ...classes].join('.');
    return [tag, (e.textContent || e.getAttribute('alt') || '').trim().replace(/\s+/g, ' ').slice(0, 50)];
  };
  const found = [];
  const named = [];
  for (const e of article.querySelectorAll('*')) {
    if (named.some(n => n.contains(e))) continue;
    const box = e.getBoundingClientRect();
    if (box.width <= 1 || box.height <= 1 || e.clientWidth <= 1 && e.tagName !== 'IMG') continue;
    const over = getComputedStyle(e).overflowX;
    if (over !== 'visible' && e.scrollWidth > e.clientWidth + 1) {
      found.push(['cut', ...describe(e), e.scrollWidth, e.clientWidth]);
      named.push(e);
      continue;
    }
    const wide = e.closest('.sandbox-wide');
    const edge = wide ? (wide === e ? screen : wide.getBoundingClientRect().right) : column;
    if (box.right > edge + 1) {
      found.push(['out', ...describe(e), Math.round(box.right), Math.round(edge)]);
      named.push(e);
    }
  }
  // a display formula sits in the middle of the column (the theme's layout for MathJax put MathML at the right edge)
  for (const math of article.querySelectorAll('div.math > math[display="block"]')) {
    const div = math.parentElement.getBoundingClientRect(), eqno = math.parentElement.querySelector('.eqno');
    const end = eqno ? eqno.getBoundingClientRect().left : div.right;  // an equation number sits at the right
    const ink = Array.from(math.children).map(c => c.getBoundingClientRect());
    if (!ink.length || div.width <= 1) continue;
    const left = Math.min(...ink.map(r => r.left)) - div.left, right = end - Math.max(...ink.map(r => r.right));
    if (Math.abs(left - right) > Math.max(16, 0.1 * div.width)) {
      found.push(['aside', ...describe(math), Math.round(left), Math.round(right)]);
    }
  }
  return {width: [innerWidth, screen, document.documentElement.scrollWidth], found,
          stacked: article.querySelectorAll('table.sandbox-stacked').length,
          widened: article.querySelectorAll('.sandbox-wide').length};
})()"""


class CheckError(Exception):
    """Bad input: a one-line message, exit code 2."""


def find_chromium(install: bool) -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if not install:
        raise CheckError("no Chromium on PATH (apt-get install -y chromium)")
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise CheckError("no Chromium on PATH, and no apt-get as root to install it: install Debian's chromium package")
    print("installing Chromium (apt-get install -y chromium) ...", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, **quiet).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, **quiet)
        if subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, **quiet).returncode != 0:
            raise CheckError("apt-get could not install chromium")
    path = shutil.which("chromium")
    if path is None:
        raise CheckError("chromium was installed but is not on PATH")
    return path


def _read_until(stream, pattern: str, seconds: float) -> re.Match:
    """The first line of ``stream`` matching ``pattern`` (a child process's output), within ``seconds``."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            time.sleep(0.05)
            continue
        seen.append(line.strip())
        m = re.search(pattern, line)
        if m:
            return m
    raise CheckError(f"no line matching {pattern!r} within {seconds:.0f} s; got: {' | '.join(seen[-3:])}")


class Browser:
    """One Chromium page driven over the DevTools protocol: commands, and the events they caused."""

    def __init__(self, chromium: str, profile: str):
        import websocket  # websocket-client, of the docs extra

        self.process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = _read_until(self.process.stderr, r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", 60).group(1)
        for _ in range(50):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
                pages = [t for t in json.load(answer) if t["type"] == "page"]
            if pages:
                break
            time.sleep(0.1)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, seconds: float = 60) -> None:
        self.ws.settimeout(seconds)
        while not any(e.get("method") == event for e in self.events):
            self.events.append(json.loads(self.ws.recv()))

    def open(self, url: str, size: tuple[int, int] = DESKTOP) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
                  mobile=size[0] < 600)  # fmt: skip
        self.events = []
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str):
        answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"in the page: {answer['exceptionDetails'].get('text')} ({expression[:60]}...)")
        return answer["result"].get("value")

    def poll(self, expression: str, seconds: float = 15):
        """The value of ``expression`` once it is truthy (it may wait for the page's scripts, or for a redirect: an
        evaluation that the page's navigation interrupts is tried again), else the last one."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                value = self.js(expression)
            except RuntimeError as err:  # "Inspected target navigated or closed", "Cannot find context"
                if time.monotonic() > deadline:
                    raise
                value = None
                if "navigated" not in str(err) and "context" not in str(err):
                    raise
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        """The page (to 12,000 px down when ``full_page``) as PNG, or as JPEG for a path ending in .jpg (about a third
        of the time on a long page)."""
        jpeg = path.suffix == ".jpg"
        params = {"format": "jpeg" if jpeg else "png", "captureBeyondViewport": full_page}
        if jpeg:
            params["quality"] = 80
        if full_page:
            width, height = self.js("[document.documentElement.clientWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": min(height, 12000), "scale": 1}
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))

    def problems(self, origin: str) -> list[str]:
        """What went wrong on the page since it was opened: failed or refused requests, requests to any other host,
        JavaScript errors."""
        found = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not url.startswith((origin, "data:", "blob:", "about:")):
                    found.append(f"a request outside the local site: {url}")
            elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
                found.append(f"HTTP {p['response']['status']} for {p['response']['url']}")
            elif method == "Network.loadingFailed" and not p.get("canceled"):
                found.append(f"failed to load ({p.get('errorText')}), request {p.get('requestId')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"JavaScript error: {p['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append(f"console error: {p['entry'].get('text')}")
        return found

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name: str, ok: bool, detail: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def layout_problems(browser: Browser, width: int) -> tuple[list[str], str]:
    """What of the open page's text column a reader at ``width`` px cannot see (LAYOUT_JS), as sentences, and a note
    of the tables the site laid out for the width (widened into the margin, stacked)."""
    page = browser.js(LAYOUT_JS)
    inner, screen, scroll = page["width"]
    problems = []
    if inner != width:
        problems.append(f"the page is laid out {inner} px wide on a {width} px screen (something is wider than it)")
    elif scroll > screen + 1:
        problems.append(f"the page scrolls sideways: {scroll} px wide on a {screen} px screen")
    for kind, tag, text, a, b in page["found"]:
        if kind == "cut":
            problems.append(f"<{tag}> {text!r} cut: {a} px of content in a {b} px box")
        elif kind == "aside":
            problems.append(f"<{tag}> {text!r} off the column's middle: {a} px of space on its left, {b} px right")
        else:
            problems.append(f"<{tag}> {text!r} reaches {a} px, past the column's edge at {b} px")
    note = f"{page['widened']} table(s) widened into the margin, {page['stacked']} stacked"
    return problems, note


def image_problems(browser: Browser) -> list[str]:
    """Every image of the open page whose alt text does not say what it shows (the site's rule, alt_problem)."""
    images = browser.js("Array.from(document.images).map(i => [i.getAttribute('src'), i.getAttribute('alt')])")
    return [f"{src.rsplit('/', 1)[-1][:24]}: {problem}" for src, alt in images if (problem := alt_problem(alt))]


def reader_checks(browser: Browser, origin: str, pages: dict[str, str], shots: Path | None, report: Report) -> None:
    """The site as a student reads it: each of ``pages`` (name -> path) at a laptop's and a phone's width, nothing of
    its text column cut or past its edge, and (once per page) every image described by its alt text."""
    for name, path in pages.items():
        for size in (DESKTOP, PHONE):
            browser.open(origin + path, size)
            browser.poll("document.readyState === 'complete'")
            problems, note = layout_problems(browser, size[0])  # before the screenshot, which resizes the page
            if shots is not None:
                slug = re.sub(r"\W+", "-", name)
                browser.screenshot(shots / f"{slug}-{size[0]}.jpg")
            fine = f"every table, code block and formula within the column ({note})"
            report.check(f"{name} at {size[0]} px: nothing cut", not problems, _listed(problems) or fine)
            if size == DESKTOP:
                missing = image_problems(browser)
                fine = f"{browser.js('document.images.length')} image(s), each described"
                report.check(f"{name}: alt text", not missing, _listed(missing) or fine)


def _listed(problems: list[str], most: int = 4) -> str:
    """The first ``most`` problems on one line, and how many more."""
    more = f" (and {len(problems) - most} more)" if len(problems) > most else ""
    return "; ".join(problems[:most]) + more


def figures_in(notebook: Path) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


def run_checks(browser: Browser, origin: str, shots: Path, report: Report) -> None:
    from sandbox.config import SECTIONS
    from sandbox.metrics import FLATNESS, METRICS

    def page(name: str, path: str, size=DESKTOP) -> None:
        browser.open(origin + path, size)
        browser.screenshot(shots / f"{name}.png")

    def clean(name: str) -> None:
        problems = browser.problems(origin)
        report.check(
            f"{name}: requests and scripts", not problems, "; ".join(problems[:3]) or "no error, nothing external"
        )

    # the home page, and the sidebar in course order
    browser.open(origin + "/")  # the site's root sends the reader on to the home page
    browser.poll("location.pathname.endsWith('/docs/index.html') && document.readyState === 'complete'", 30)
    browser.screenshot(shots / "home.png")
    title = browser.js("document.title")
    report.check("home: opens", "teaching sandbox" in title, f"title {title!r}, at {browser.js('location.pathname')}")
    nav = browser.js(
        "Array.from(document.querySelectorAll('.bd-sidebar-primary nav a.reference, .bd-sidebar-primary p.caption'))"
        ".map(a => a.tagName === 'P' ? 'caption:' + a.textContent.trim() : a.getAttribute('href'))"
    )
    lessons = [x for x in nav if re.search(r"notebooks/\d\d_", x)]
    on_disk = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    wanted = [p.name[:2] for p in on_disk]  # every lesson of notebooks/, in course order
    order = [re.search(r"notebooks/(\d\d)_", x).group(1) for x in lessons]
    captions = [x.removeprefix("caption:") for x in nav if x.startswith("caption:")]
    report.check("home: sidebar", order == wanted and len(captions) >= 4, f"lessons {' '.join(order)}; {captions}")
    clean("home")

    # lesson 03: figures loaded, answers collapsed; then on a phone
    lesson = "/notebooks/03_dropout_and_the_ratio.html"
    page("lesson03", lesson)
    images = browser.js(
        "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
    )
    broken = [src for src, ok in images if not ok]
    expected = figures_in(ROOT / "notebooks" / "03_dropout_and_the_ratio.ipynb")
    report.check(
        "lesson 03: figures",
        not broken and len(images) >= expected > 0,
        f"{len(images)} <img>, {len(images) - len(broken)} loaded (naturalWidth > 0); the notebook has {expected} PNG"
        + (f"; not loaded: {broken[:3]}" if broken else ""),
    )
    details = browser.js(
        "Array.from(document.querySelectorAll('details')).map(d => [d.open, d.querySelector('summary').textContent"
        ".trim(), Array.from(d.children).filter(c => c.tagName !== 'SUMMARY').some(c => c.checkVisibility())])"
    )
    shown = [s for is_open, s, visible in details if is_open or visible]
    report.check(
        "lesson 03: answers collapsed",
        bool(details) and not shown,
        f"{len(details)} <details> ({', '.join(sorted({s for _, s, _ in details}))}), {len(shown)} open",
    )
    clean("lesson 03")

    # lesson 01: formulas as MathML, drawn by the browser
    page("lesson01", "/notebooks/01_advantages.html")
    maths = browser.js("Array.from(document.querySelectorAll('math')).map(m => m.getBoundingClientRect().width)")
    report.check("lesson 01: formulas", bool(maths) and min(maths) > 0, f"{len(maths)} <math>, all drawn")
    clean("lesson 01")

    # reference pages generated from the code
    page("reference-config", "/docs/reference/config.html")
    sections = browser.js("Array.from(document.querySelectorAll('section[id^=section-]')).map(s => s.id)")
    flags = browser.js("Array.from(document.querySelectorAll('dl.sandbox-config dt code')).map(c => c.textContent)")
    want = [f"section-{g}" for g in SECTIONS]
    report.check(
        "reference: config",
        sections == want and "--clip-coef" in flags,
        f"{len(sections)} sections of {len(SECTIONS)}, {len(flags)} fields, with --clip-coef: {'--clip-coef' in flags}",
    )
    clean("reference: config")
    page("reference-metrics", "/docs/reference/metrics.html")
    cells = browser.js(
        "Array.from(document.querySelectorAll('table tbody tr td:first-child')).map(c => c.textContent.trim())"
    )
    missing = [m for m in [*METRICS, *FLATNESS] if m not in cells]
    report.check(
        "reference: metrics", not missing, f"{len(cells)} rows, every column of sandbox.metrics: {missing or 'yes'}"
    )
    clean("reference: metrics")

    # search, offline
    page("search", "/search.html?q=first_ratio_dev")
    browser.poll("(document.querySelector('#search-results') || {}).textContent.includes('Search finished')", 30)
    hits = browser.js(
        "Array.from(document.querySelectorAll('#search-results li > a')).map(a => a.getAttribute('href'))"
    )
    browser.screenshot(shots / "search.png", full_page=False)
    rank = next((i + 1 for i, h in enumerate(hits or []) if "reference/metrics.html" in h), None)
    report.check(
        "search: first_ratio_dev",
        rank is not None,
        f"{len(hits or [])} pages found, the metrics page {'number ' + str(rank) if rank else 'not among them'}",
    )
    clean("search")

    # the pages a student reads most, at a laptop's and a phone's width
    reader_checks(browser, origin, READER_PAGES, shots, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docs_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("site", help="the built site (make docs's output)")
    parser.add_argument("--screenshots", default="build/docs-check", help="folder for the pages' screenshots")
    parser.add_argument("--no-install", action="store_true", help="fail instead of installing a missing Chromium")
    parser.add_argument(
        "--all-pages", action="store_true", help="only the reader's checks, on every page of the site (no screenshots)"
    )
    args = parser.parse_args(argv)
    site = Path(args.site)
    try:
        if not (site / "docs" / "index.html").is_file():
            raise CheckError(f"{site}: no built site here (docs/index.html missing): run make docs first")
        chromium = find_chromium(not args.no_install)
    except CheckError as err:
        print(f"docs_check: error: {err}", file=sys.stderr)
        return 2
    shots = Path(args.screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(site), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    browser = None
    report = Report()
    start = time.monotonic()
    try:
        port = _read_until(server.stdout, r"port (\d+)", 30).group(1)
        origin = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory(prefix="docs-check-profile-", ignore_cleanup_errors=True) as profile:
            browser = Browser(chromium, profile)
            print(f"{browser.send('Browser.getVersion')['product']}, headless; site {site} at {origin}", flush=True)
            try:
                if args.all_pages:
                    pages = sorted(p.relative_to(site).as_posix() for p in site.glob("[dn]o*/**/*.html"))
                    reader_checks(browser, origin, {p: "/" + p for p in pages}, None, report)
                else:
                    run_checks(browser, origin, shots, report)
            finally:
                browser.close()
    except CheckError as err:
        print(f"docs_check: error: {err}", file=sys.stderr)
        return 2
    finally:
        server.terminate()
        server.wait(10)
    where = "no screenshots" if args.all_pages else f"screenshots: {shots}/"
    print(f"{where} ({time.monotonic() - start:.1f} s)")
    print(f"{report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
