"""The course website (``make docs``) and the README that points into it.

- the site builds offline with warnings as errors (a broken cross-reference, a missing image or toctree entry, a bad
  docstring, and, checked on the built pages, a local link or anchor that resolves to no file or id);
- the reference pages are the code's: every Config field with its ``--help`` text, every column of ``sandbox.metrics``;
- the README stays a short page (at most 250 lines) that links every page of the site, its blocks shared with the
  site (install steps, the modes table, the demo's table) are the same text as there, and its Python example runs;
- every lesson figure has alt text that says what it shows, in its cell's metadata and in the lesson's .py;
- the browser check's reader rules (tools/docs_check.py) report a table or code cut at the column's edge and an image
  whose alt text is a file name, on a tiny page, and pass the same page with the site's CSS and script.

The build needs the ``docs`` extra (``make test`` installs it; ``make setup`` alone does not, and the build test is
skipped there). The browser check of the built site is ``make docs-check`` (tools/docs_check.py); its test here needs
Chromium (which make docs-check installs) and is skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(
    p
    for p in DOCS.rglob("*.md")
    if not any(part.startswith("_") for part in p.relative_to(DOCS).parts)
    and not p.match("studies/*/report.md")  # a study's report as its bench wrote it, not a page (docs/conf.py)
    and not p.match("demo/report.md")  # the demo's, as sandbox demo wrote it
)
SHARED = re.compile(
    r"<!-- shared block: (\w+) \(the same text in README.md and on the site; [^)]*\) -->\n"
    r"(.*?)\n<!-- end of shared block -->",
    re.S,
)


@pytest.mark.skipif(importlib.util.find_spec("sphinx") is None, reason="the docs extra is not installed (make docs)")
def test_the_site_builds_offline_with_warnings_as_errors_and_every_link_resolves(tmp_path):
    from sandbox.config import SECTIONS
    from sandbox.metrics import FLATNESS, METRICS

    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html"]
        + ["-d", str(tmp_path / "doctrees"), "-c", str(DOCS), str(ROOT), str(site)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert build.returncode == 0, f"make docs fails:\n{build.stderr[-4000:]}"
    assert build.stderr.strip() == "", build.stderr[-4000:]

    assert (site / "index.html").is_file() and (site / "docs" / "index.html").is_file()
    lessons = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    homework = sorted(p.stem for p in (ROOT / "notebooks" / "homework").glob("hw[0-9]_*.ipynb"))
    assert len(lessons) == 10 and len(homework) == 6
    for stem in lessons:
        assert (site / "notebooks" / f"{stem}.html").is_file(), f"lesson {stem} is not on the site"
    for stem in homework:
        assert (site / "notebooks" / "homework" / f"{stem}.html").is_file(), f"homework {stem} is not on the site"
    for page in PAGES:
        assert (site / page.relative_to(ROOT).with_suffix(".html")).is_file(), f"{page.name} is not on the site"
    assert (site / "searchindex.js").is_file()
    assert (
        not list(site.rglob("*mathjax*")) and "cdn.jsdelivr" not in (site / "notebooks/01_advantages.html").read_text()
    )

    sys.path.insert(0, str(DOCS / "_ext"))  # the build already failed on any (a warning); said here plainly too
    from sandbox_site import broken_links

    assert broken_links(site) == []

    config = (site / "docs" / "reference" / "config.html").read_text()
    for name in SECTIONS:
        assert f'id="section-{name}"' in config
    from sandbox.config import Config

    for field in Config.__dataclass_fields__:
        assert f'id="field-{field}"' in config, f"Config.{field} is missing from the config page"
    metrics = re.sub(r"<[^>]+>", "", (site / "docs" / "reference" / "metrics.html").read_text())
    for name in [*METRICS, *FLATNESS]:
        assert f"\n{name}\n" in metrics, f"metric {name} is missing from the metrics page"


def test_readme_is_short_and_links_every_page_of_the_site():
    readme = README.read_text()
    assert len(readme.splitlines()) <= 250
    links = set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme))
    wanted = {p.relative_to(ROOT).as_posix() for p in PAGES} | {"notebooks/README.md", "notebooks/homework/README.md"}
    assert wanted - links == set(), "pages of the site the README does not link"
    for link in links:
        if not re.match(r"[a-z]+:", link):
            assert (ROOT / link).exists(), f"the README links {link}, which does not exist"


def test_every_page_is_in_the_sites_table_of_contents():
    index = (DOCS / "index.md").read_text()
    entries = set()
    for block in re.findall(r"```\{toctree\}\n(.*?)```", index, re.S):
        for line in block.splitlines():
            if line and not line.startswith(":"):
                entries.add(re.sub(r"^.*<(.*)>$", r"\1", line).strip())
    pages = {p.relative_to(DOCS).with_suffix("").as_posix() for p in PAGES} - {"index"}
    assert pages - entries == set(), "pages missing from the sidebar (docs/index.md's toctrees)"


def test_readme_blocks_shared_with_the_site_are_the_same_text():
    readme = dict(SHARED.findall(README.read_text()))
    pages = {name: (page, text) for page in PAGES for name, text in SHARED.findall(page.read_text())}
    assert set(readme) == {"install", "times", "modes", "demo"} and set(pages) == set(readme)
    for name, text in readme.items():
        assert text == pages[name][1], f"the README's {name} block differs from {pages[name][0].name}'s"


def test_the_readme_python_example_runs(tmp_path):
    """The README's "From Python" example, with a shorter budget: it runs, and consistent dropout's first ratio is
    exact where naive's is not."""
    readme = README.read_text()
    section = readme[readme.index("## From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10 and "total_steps=20_000" in code
    run = subprocess.run(
        [sys.executable, "-c", code.replace("total_steps=20_000", "total_steps=2_048")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    naive, consistent = run.stdout.splitlines()
    assert naive.strip().startswith("naive: first_ratio_dev 0.") and not naive.strip().startswith(
        "naive: first_ratio_dev 0.000"
    )
    assert consistent.startswith("consistent: first_ratio_dev 0.000, first_clipfrac 0.000")


def test_docs_check_refuses_a_folder_without_a_site(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "docs_check.py"), str(tmp_path), "--no-install"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"docs_check: error: {tmp_path}: no built site here (docs/index.html missing): run make docs first"
    ]


def test_every_lesson_figure_says_what_it_shows_and_its_alt_text_lives_in_the_lessons_source():
    """Each figure of a committed lesson has real alt text in its cell's metadata (``mystnb: image: alt``, a list for
    a cell with several figures), and the paired .py carries it on the cell's ``# %%`` line, so editing the source
    and re-running the lesson keeps it. The rule itself: no file name, no hash, at least three words."""
    import jupytext

    sys.path.insert(0, str(DOCS / "_ext"))
    from sandbox_site import alt_problem, figures_of, notebook_alt_problems

    figures = 0
    for lesson in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(lesson.read_text())
        assert notebook_alt_problems(notebook) == [], f"{lesson.name}: figures without alt text"
        source = jupytext.read(lesson.with_suffix(".py")).cells
        for n, (cell, paired) in enumerate(zip(notebook["cells"], source, strict=True), 1):
            if cell["cell_type"] == "code" and figures_of(cell):
                figures += figures_of(cell)
                assert paired.metadata.get("mystnb") == cell["metadata"]["mystnb"], f"{lesson.stem}.py cell {n}"
    assert figures >= 40
    assert alt_problem("../_images/f9f2ab34cd56ef78.png") == "alt text '../_images/f9f2ab34cd56ef78.png' is a file name"
    assert "a hash" in alt_problem("figure f9f2ab34cd56ef7890 of the lesson")
    assert "fewer than three words" in alt_problem("learning_curves")
    assert alt_problem("") == alt_problem(None) == "no alt text"
    assert alt_problem("Learning curves of the demo, one line per mode") is None
    cell = {"cell_type": "code", "metadata": {}, "outputs": [{"data": {"image/png": "..."}}] * 2}
    assert notebook_alt_problems({"cells": [cell]}) == [
        "cell 1: 2 figures, no alt text in its metadata (mystnb: image: alt)"
    ]
    cell["metadata"] = {"mystnb": {"image": {"alt": ["The first figure, described", "The second one, described"]}}}
    assert notebook_alt_problems({"cells": [cell]}) == []


# A page shaped like the site's (the text column is article.bd-article): a table of twelve columns, a code line of 150
# characters, a display formula laid out as the theme does for MathJax (at the right edge), and a figure whose alt
# text is its file name, as the site had them.
_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{head}
<style>body {{ margin: 0; font: 16px sans-serif; }} .bd-article {{ max-width: 640px; padding: 0 16px; }}
.pst-scrollable-table-container {{ overflow-x: auto; }} pre {{ overflow: auto; }}</style></head>
<body><article class="bd-article"><p>A lesson's text.</p>
<div class="pst-scrollable-table-container"><table class="table">
<thead><tr>{header}</tr></thead><tbody><tr>{row}</tr><tr>{row}</tr></tbody></table></div>
<pre>{code}</pre>
<div class="math" style="display: flex; flex-direction: row-reverse">{formula}</div>
<img src="{pixel}" alt="{alt}" width="40" height="40">
</article></body></html>"""


_PIXEL = (  # one white pixel
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJ"
    "RU5ErkJggg=="
)


def _page(tmp_path, name: str, alt: str, head: str = "") -> str:
    page = tmp_path / f"{name}.html"
    page.write_text(
        _PAGE.format(
            head=head,
            header="".join(f"<th>first_ratio_dev, seed {i}</th>" for i in range(12)),
            row="".join("<td>-1234.56789 [-2345.6, -123.4]</td>" for _ in range(12)),
            code="x = compute(" + ", ".join(f"argument_{i}" for i in range(12)) + ")  # one long line of a lesson",
            alt=alt,
            pixel=_PIXEL,
            formula='<math display="block"><mi>A</mi><mo>=</mo><mi>r</mi><mo>+</mo><mi>V</mi></math>',
        )
    )
    return page.as_uri()


@pytest.mark.skipif(importlib.util.find_spec("websocket") is None, reason="the docs extra is not installed")
def test_docs_check_reports_a_cut_table_cut_code_and_an_image_without_alt_text_and_the_sites_css_fixes_them(tmp_path):
    """The browser check's reader rules on two tiny pages (no site build; about 3 s with Chromium, skipped without
    it: CI's make docs-check installs it first): the raw page fails at a laptop's and a phone's width, with the table,
    the code and the formula named and the file-name alt text refused; the same page with the site's site.css and
    site.js (code wrapped, the table stacked, the formula centred) and real alt text passes."""
    sys.path.insert(0, str(ROOT / "tools"))
    import docs_check

    try:
        chromium = docs_check.find_chromium(install=False)
    except docs_check.CheckError:
        pytest.skip("no Chromium on PATH (make docs-check installs it)")
    raw = _page(tmp_path, "raw", alt="../_images/f9f2ab34cd56ef7890123456789abcde.png")
    static = (DOCS / "_static").as_uri()
    fixed = _page(
        tmp_path,
        "fixed",
        alt="Learning curves of four dropout modes, one line per seed",
        head=f'<link rel="stylesheet" href="{static}/site.css"><script defer src="{static}/site.js"></script>',
    )
    browser = docs_check.Browser(chromium, str(tmp_path / "profile"))
    try:
        for size in (docs_check.DESKTOP, docs_check.PHONE):
            browser.open(raw, size)
            problems, _ = docs_check.layout_problems(browser, size[0])
            assert any("div.pst-scrollable-table-container" in p and "cut" in p for p in problems), problems
            assert any(p.startswith("<pre> 'x = compute(argument_0") and "cut" in p for p in problems), problems
            assert any(p.startswith("<math> 'A=r+V' off the column's middle") for p in problems), problems
            (refused,) = docs_check.image_problems(browser)
            assert refused.endswith(": alt text '../_images/f9f2ab34cd56ef7890123456789abcde.png' is a file name")
            browser.open(fixed, size)
            problems, note = docs_check.layout_problems(browser, size[0])
            assert problems == [], problems
            assert docs_check.image_problems(browser) == []
            assert note.endswith("1 stacked"), note  # twelve columns fit neither width: one block per row
    finally:
        browser.close()
