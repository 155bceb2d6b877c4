"""The course site's own Sphinx pieces: reference pages generated from the code, and formulas written as MathML.

- ``{sandbox-config}``: every field of :class:`sandbox.config.Config`, section by section
  (:data:`sandbox.config.SECTIONS`), with its flag, type, default and docstring (read by tyro's own reader, so the text
  is ``--help``'s), which kinds of run each section applies to (:data:`sandbox.config.APPLIES`,
  :data:`sandbox.config.KINDS`), and what each field's declaration adds (:func:`field_notes`: fewer kinds, defaults
  per kind, what SB3 and populations refuse).
- ``{sandbox-metrics} metrics`` and ``{sandbox-metrics} flatness``: the columns of ``metrics.csv`` and ``flatness.csv``
  with their meanings, from :mod:`sandbox.metrics`, in the schema's order.
- the ``mathml`` math renderer: every formula converted to MathML at build time (latex2mathml), which browsers draw
  themselves, so the site loads no MathJax from a CDN and reads offline.
- after an HTML build, every local link and anchor of every built page (the theme's buttons and sidebars included,
  which MyST's own checks do not see) must resolve to a file and an id that exist: each one that does not is a
  warning, so ``make docs`` (warnings as errors) fails on it.
- every image of the site has alt text that says what it shows (a screen reader reads it in the figure's place): a
  markdown image's ``![...]``, a lesson figure's from its cell's metadata (:func:`figure_alts`). An image without
  one, or whose alt text is a file name or a hash, is a warning (:func:`alt_problem`).
- a pandas table's header may break after an underscore (``first_ratio_dev``), so a table of long column names
  fits its column (docs/_static/site.css and site.js keep every column of a table in sight).
"""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def _markdown_cell(text: str) -> str:
    """``text`` as the cell of a markdown table: pipes, angle brackets and asterisks taken literally."""
    text = " ".join(text.split())
    return re.sub(r"([|<>*])", r"\\\1", text)


# The object types of the schemas' columns: each row of a table is a target (``metrics.html#metric-first_ratio_dev``),
# the search lists a column as an object above the pages that merely mention it, and a page can link one with
# {metric}`first_ratio_dev`.
OBJECT_TYPES = {"metrics": "metric", "flatness": "flatness-column"}


class MetricsDirective(SphinxDirective):
    """A table of one schema of :mod:`sandbox.metrics`: ``metrics`` (metrics.csv) or ``flatness`` (flatness.csv)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from sandbox import metrics

        schemas = {"metrics": metrics.METRICS, "flatness": metrics.FLATNESS}
        if self.arguments[0] not in schemas:
            raise self.error(f"sandbox-metrics: one of {', '.join(schemas)}, got {self.arguments[0]!r}")
        schema, objtype = schemas[self.arguments[0]], OBJECT_TYPES[self.arguments[0]]
        lines = ["| column | meaning |", "|---|---|"]
        lines += [f"| `{name}` | {_markdown_cell(doc)} |" for name, doc in schema.items()]
        container = nodes.container(classes=["sandbox-metrics"])
        self.state.nested_parse(StringList(lines, source="sandbox.metrics"), self.content_offset, container)
        std = self.env.get_domain("std")
        rows = [r for r in container.findall(nodes.row) if not isinstance(r.parent, nodes.thead)]
        for row, name in zip(rows, schema, strict=True):
            node_id = f"{objtype}-{name}"
            row["ids"].append(node_id)
            std.note_object(objtype, name, node_id, location=row)
        return container.children


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    return repr(value)


def field_help(section: type, name: str) -> str:
    """The field's docstring as ``sandbox train --help`` shows it (tyro's own reader of field docstrings)."""
    from tyro import _docstrings

    return _docstrings.get_field_docstring(section, name, ()) or ""


def field_notes(name: str) -> list[str]:
    """What the declaration of config field ``name`` says beyond its section's (:func:`sandbox.config.option`), in
    words: the kinds of run it applies to when they are fewer than its section's, its default per kind of run, what
    SB3's PPO and a population of seeds refuse."""
    from sandbox import config

    f, notes = config.FIELDS[name], []
    if config.FIELD_KINDS[name] != config.APPLIES[config.SECTION_OF[name]]:
        notes.append("Only for " + ", ".join(config.KINDS[k] for k in config.FIELD_KINDS[name]) + ".")
    if "per_kind" in f.metadata:
        values = [f"{config.KINDS[k]} {config.KIND_DEFAULTS[k][name]!r}" for k in config.KINDS]
        notes.append("None is the kind of run's default: " + ", ".join(values) + ".")
    if name in config.SB3_UNSUPPORTED:
        notes.append(f"Not with --algo sb3-ppo: {config.SB3_UNSUPPORTED[name][1]}.")
    if name in config.POPULATION_UNSUPPORTED:
        notes.append(f"Not in a population of several seeds (only {config.POPULATION_UNSUPPORTED[name]!r}).")
    return notes


class ConfigDirective(SphinxDirective):
    """One section per section of :data:`sandbox.config.SECTIONS`: where it applies, then every field, with what its
    declaration says (:func:`field_notes`)."""

    option_spec = {"heading-level": directives.nonnegative_int}

    def run(self) -> list[nodes.Node]:
        from sandbox.config import APPLIES, KINDS, SECTIONS, TITLES

        out: list[nodes.Node] = [self._applies_table(SECTIONS, APPLIES, KINDS, TITLES)]
        std = self.env.get_domain("std")
        for name, cls in SECTIONS.items():
            section = nodes.section(ids=[f"section-{name}"], names=[f"section-{name}"])
            section += nodes.title(text=f"{TITLES[name][0].upper()}{TITLES[name][1:]} ({name})")
            section += nodes.paragraph(text=" ".join((cls.__doc__ or "").split()))
            kinds = [KINDS[k] for k in APPLIES[name]]
            applies = "every kind of run" if len(kinds) == len(KINDS) else ", ".join(kinds)
            para = nodes.paragraph()
            para += nodes.strong(text="Applies to: ")
            para += nodes.Text(applies + ".")
            refused = [KINDS[k] for k in KINDS if k not in APPLIES[name]]
            if refused:
                para += nodes.Text(
                    " A field of this section set for " + ", ".join(refused) + " is refused in one line."
                )
            section += para
            items = nodes.definition_list(classes=["sandbox-config"])
            for field in dataclasses.fields(cls):
                term = nodes.term(ids=[f"field-{field.name}"])
                std.note_object("config-field", field.name, f"field-{field.name}", location=term)
                term += nodes.literal(text="--" + field.name.replace("_", "-"))
                term += nodes.Text("  ")
                term += nodes.emphasis(text=f"{field.name}: {field.type} = {_default(field)}")
                role = field.metadata.get("role")
                if role:
                    term += nodes.Text(f"  (role: {role})")
                body = nodes.definition()
                for paragraph in field_help(cls, field.name).split("\n\n"):
                    body += nodes.paragraph(text=" ".join(paragraph.split()))
                for note in field_notes(field.name):
                    body += nodes.paragraph("", "", nodes.emphasis(text=note))
                items += nodes.definition_list_item("", term, body)
            section += items
            out.append(section)
        return out

    @staticmethod
    def _applies_table(sections, applies, kinds, titles) -> nodes.table:
        table = nodes.table(classes=["sandbox-applies"])
        tgroup = nodes.tgroup(cols=len(kinds) + 1)
        table += tgroup
        for _ in range(len(kinds) + 1):
            tgroup += nodes.colspec(colwidth=1)

        def row(cells: list[str], link_first: bool = False) -> nodes.row:
            r = nodes.row()
            for i, text in enumerate(cells):
                entry = nodes.entry()
                if link_first and i == 0:  # the section's name, a link to it below
                    inner = nodes.reference("", "", nodes.literal(text=text), refid=f"section-{text}", internal=True)
                else:
                    inner = nodes.Text(text)
                entry += nodes.paragraph("", "", inner)
                r += entry
            return r

        head = nodes.thead()
        head += row(["section", *kinds.values()])
        tgroup += head
        body = nodes.tbody()
        for name in sections:
            body += row([name, *("yes" if k in applies[name] else "-" for k in kinds)], link_first=True)
        tgroup += body
        return table


# --- formulas as MathML ------------------------------------------------------------------------------------------


def _mathml(latex: str, display: str) -> str:
    from latex2mathml.converter import convert

    return convert(latex.strip(), display=display)


def _visit_inline(self, node) -> None:
    self.body.append(f'<span class="math notranslate">{_mathml(node.astext(), "inline")}</span>')
    raise nodes.SkipNode


def _visit_block(self, node) -> None:
    if node.get("label"):
        self.body.append(f'<span class="eqno">({node["number"]})</span>')
    self.body.append(f'<div class="math notranslate">{_mathml(node.astext(), "block")}</div>')
    raise nodes.SkipNode


WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    "[An interactive widget: its sliders need the notebook's running kernel,\n"
    " so it works in Jupyter, not on this page.\n"
    " The figure above is the cell's own output for its first setting.]"
)


# --- alt text: every figure says what it shows -----------------------------------------------------------------

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
ALTS = "sandbox_alts"  # where a cell's alt texts wait for its figures between reading the notebook and its doctree


def alt_problem(alt: str | None) -> str | None:
    """What is wrong with ``alt`` as the alt text of a figure, or None when it is real: words that say what the
    figure shows. Wrong: none or empty, a file name or path (``../_images/f9f2...png``, what a browser falls back
    to), a hash-like name, or fewer than three words ("figure", "learning_curves")."""
    text = (alt or "").strip()
    if not text:
        return "no alt text"
    if re.search(r"\.(png|jpe?g|gif|svg|webp)\b", text, re.I) or re.fullmatch(r"[\w./-]*/[\w./-]*", text):
        return f"alt text {text[:60]!r} is a file name"
    if re.search(r"\b[0-9a-f]{16,}\b", text, re.I):
        return f"alt text {text[:60]!r} is a hash"
    if len(text.split()) < 3:
        return f"alt text {text!r} does not say what the figure shows (fewer than three words)"
    return None


def figure_alts(cell: dict) -> list[str]:
    """The alt texts a lesson's code cell gives its figures (its image outputs, in order), from the cell's metadata:
    MyST-NB's own ``mystnb: image: alt`` (one text, for a cell with one figure), or a list of texts there, one per
    figure, for a cell that draws several (the site hands each figure its own; MyST-NB alone takes one text).

    In the lesson's percent-format source (jupytext) the metadata sits on the cell's first line::

        # %% mystnb={"image": {"alt": "Three panels against env steps: ..."}}
    """
    alt = cell.get("metadata", {}).get("mystnb", {}).get("image", {}).get("alt")
    if alt is None:
        return []
    return [alt] if isinstance(alt, str) else [str(a) for a in alt]


def figures_of(cell: dict) -> int:
    """How many figures (image outputs) a code cell shows."""
    return sum(any(t in o.get("data", {}) for t in IMAGE_TYPES) for o in cell.get("outputs", []))


def notebook_alt_problems(notebook: dict) -> list[str]:
    """Every figure of ``notebook`` (a lesson, as JSON) without real alt text in its cell's metadata, as
    ``cell N: problem`` (N counted from 1, as Jupyter shows cells)."""
    found = []
    for n, cell in enumerate(notebook.get("cells", []), 1):
        figures = figures_of(cell) if cell.get("cell_type") == "code" else 0
        if not figures:
            continue
        alts = figure_alts(cell)
        if len(alts) not in (1, figures) or (len(alts) == 1 < figures):
            what = f"{len(alts)} alt texts" if alts else "no alt text in its metadata (mystnb: image: alt)"
            found.append(f"cell {n}: {figures} figure{'s' if figures > 1 else ''}, {what}")
            continue
        found += [f"cell {n}: {p}" for p in map(alt_problem, alts) if p]
    return found


def _notebook_for_the_site(app, docname: str, source: list[str]) -> None:
    """What the site reads of a notebook (the committed file is left as it is):

    - the homework notebooks are kept without notebook metadata (jupytext strips it): their code is Python, for
      highlighting, as the lessons' ``language_info`` says;
    - a widget's output (lesson 03's sliders) needs a kernel: the page says so instead of showing the widget's repr;
    - a cell with several figures keeps its list of alt texts aside for :func:`_figures_alt_text` (MyST-NB takes one
      text per cell), and a pandas table's header cells may break after an underscore (``<wbr>``).
    """
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    notebook = json.loads(source[0])
    metadata = notebook.setdefault("metadata", {})
    if not metadata.get("language_info"):
        metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    metadata.pop("widgets", None)
    for cell in notebook.get("cells", []):
        alts = figure_alts(cell)
        if len(alts) > 1 or (alts and not isinstance(cell["metadata"]["mystnb"]["image"]["alt"], str)):
            cell["metadata"][ALTS] = alts
            cell["metadata"]["mystnb"]["image"]["alt"] = alts[0]
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET in data:
                output["data"] = {"text/plain": WIDGET_NOTE}
            elif "dataframe" in "".join(data.get("text/html", "")):
                data["text/html"] = _breakable_headers("".join(data["text/html"]))
    source[0] = json.dumps(notebook)


def _breakable_headers(html: str) -> str:
    """A pandas table's HTML with a line-break opportunity after every underscore of its header cells' text."""
    return re.sub(r"(<th[^>]*>)([^<]*)(</th>)", lambda m: m[1] + m[2].replace("_", "_<wbr>") + m[3], html)


def _figures_alt_text(app, doctree) -> None:
    """Each figure of a cell with several gets its own alt text; then every image of the page must have real alt
    text (a warning names the image and what is wrong)."""
    from sphinx.util import logging

    for cell in doctree.findall(nodes.container):
        alts = cell.get("nb_element") == "cell_code" and cell.get("cell_metadata", {}).get(ALTS)
        if alts:
            for image, alt in zip(cell.findall(nodes.image), alts):
                image["alt"] = alt
    logger = logging.getLogger(__name__)
    for image in doctree.findall(nodes.image):
        problem = alt_problem(image.get("alt"))
        if problem:
            where = image.get("candidates", {}).get("*") or image.get("uri", "")
            if re.search(r"[0-9a-f]{32}", where):  # a notebook's output, written under its hash by MyST-NB
                where = "a figure of a code cell (its cell's metadata: mystnb: image: alt)"
            logger.warning("an image without alt text (%s): %s", problem, where, location=image,
                           type="sandbox", subtype="alt")  # fmt: skip


# --- every local link of the built site resolves ----------------------------------------------------------------


class _Refs(HTMLParser):
    """The ids of a page, and the local references (href, src) it makes."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if a.get(key) is not None and tag in ("a", "link", "img", "script", "source", "iframe"):
                self.refs.append(a[key])


def broken_links(site: Path) -> list[str]:
    """Every local link or anchor of the built pages under ``site`` that leads nowhere, as ``page -> link (why)``."""
    parsed: dict[Path, _Refs] = {}

    def parse(path: Path) -> _Refs:
        if path not in parsed:
            parsed[path] = _Refs()
            parsed[path].feed(path.read_text(encoding="utf-8"))
        return parsed[path]

    broken = []
    for page in sorted(site.rglob("*.html")):
        if page.relative_to(site).parts[0] in ("_static", "_sources"):
            continue  # the theme's templates and the pages' sources, not pages
        for ref in parse(page).refs:
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc or ref.startswith("//"):
                continue  # an external link: not the site's to resolve
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(site)} -> {ref}"
            if not target.is_file():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in parse(target).ids:
                broken.append(f"{where} (no such anchor)")
    return broken


def _check_links(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        from sphinx.util import logging

        logger = logging.getLogger(__name__)
        for problem in broken_links(Path(app.outdir)):
            logger.warning("broken link in the built site: %s", problem, type="sandbox", subtype="link")


def setup(app):
    app.connect("build-finished", _check_links)
    app.connect("source-read", _notebook_for_the_site)
    app.connect("doctree-read", _figures_alt_text)
    app.add_object_type("config-field", "config-field", objname="config field (sandbox.Config)")
    for objtype in OBJECT_TYPES.values():
        app.add_object_type(objtype, objtype, objname=f"{objtype.replace('-', ' ')} (sandbox.metrics)")
    app.add_directive("sandbox-metrics", MetricsDirective)
    app.add_directive("sandbox-config", ConfigDirective)
    app.add_html_math_renderer("mathml", (_visit_inline, None), (_visit_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
