"""The course website: Sphinx with MyST-NB and sphinx-book-theme, built offline by `make docs`.

The source directory is the repository itself (``sphinx-build -c docs . OUT``), restricted by ``include_patterns`` to
the site's pages (``docs/``) and the course (``notebooks/``: the lessons with their committed outputs, never
executed here, the course map, the homework and its instructor notes), so nothing is copied and every link between
them is the link GitHub follows too.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "Dropout in RL: a teaching sandbox"
author = "the dropout-rl-sandbox authors"
copyright = "2026, " + author
release = "0.1.0"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sandbox_site"]

root_doc = "docs/index"
include_patterns = [
    "docs/**",
    "notebooks/README.md",
    "notebooks/[0-9][0-9]_*.ipynb",
    "notebooks/homework/README.md",
    "notebooks/homework/hw[0-9]_*.ipynb",
]
exclude_patterns = [
    ".*",
    "build",
    "runs",
    "sweeps",
    "docs/_ext",
    "docs/_extra",
    "docs/_static",
    "docs/studies/**/report.md",  # a study's report as written by its bench; the guide's pages show its tables
    "docs/demo/report.md",  # the demo's report as sandbox demo wrote it; the demo page shows its key table
    "**/.ipynb_checkpoints",
]

# MyST: $...$ and $$...$$ formulas (the lessons'), ::: fences, GitHub-style anchors for the headings (so a page's
# `#section` links work on the site as on GitHub)
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# The lessons are shown with the outputs they were committed with (`make notebooks` runs them), never executed here.
# Lesson 03's slider needs a running kernel: the site shows the figure drawn next to it and a note that the widget
# works in Jupyter (docs/_ext/sandbox_site.py), and loads no widget scripts from a CDN.
nb_execution_mode = "off"
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [
    ("html", "application/vnd.jupyter.widget-view+json", None),
    ("html", "application/vnd.jupyter.widget-state+json", None),
]
nb_merge_streams = True

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

html_theme = "sphinx_book_theme"
html_title = "Dropout in RL: a teaching sandbox"
html_math_renderer = "mathml"
html_extra_path = ["_extra"]
html_static_path = ["_static"]
html_css_files = ["site.css"]
# a table too wide for its column is drawn stacked, one block per row (docs/_static/site.js)
html_js_files = [("site.js", {"defer": "defer"})]
html_favicon = "_static/favicon.svg"
# the download button of a page gives its source: a lesson or an assignment as its .ipynb, a page as its .md
html_copy_source = True
html_sourcelink_suffix = ""
html_show_sourcelink = False
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
    "navigation_with_keys": False,
}
