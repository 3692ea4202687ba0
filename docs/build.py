"""Build the astrotool documentation into ``docs/_build/html`` (``make docs``).

One pdoc run renders, so that cross-links work between all of them:

- the guide: ``docs/*.md`` (overview, quickstart, configuration, workspace,
  batch jobs, the ML layer, one page per plugin, writing a plugin) and the CLI reference generated
  from the real command tree (:mod:`clidoc`, beside this file), as the pages of
  a generated package ``guide``;
- the API of the core package ``astrotool`` and of every installed plugin
  package (entry points in group ``astrotool.plugins``).

LaTeX math becomes MathML at build time (:mod:`docmath`), so the pages need no
network when they are read; ``<placeholders>`` outside code stay text
(:func:`docmath.escape_placeholders`). The build fails (exit 1) when the CLI
reference misses a command or option, when a guide shows an ``astro ...``
command line that does not exist, when a page links to an anchor it does not
have, or when a page would load anything from the network.

Usage: ``python docs/build.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import html
import importlib
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

__docformat__ = "numpy"

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
BUILD = DOCS / "_build"
GUIDE = "guide"  # the generated package holding the guide pages
PAGES = [  # (docs/<name>.md or the generated reference, title), in navigation order
    ("index", "Overview"),
    ("quickstart", "Quickstart"),
    ("configuration", "Configuration"),
    ("workspace", "Workspace"),
    ("batch", "Batch jobs"),
    ("ml", "The ML layer"),
    ("dre", "DRE: galaxy morphology"),
    ("lens", "Lens: shear estimators"),
    ("lens_kappa", "Lens: mass maps"),
    ("plato", "PLATO: single transits"),
    ("ztf", "ZTF: alert stamps"),
    ("plugins", "Writing a plugin"),
    ("cli", "CLI reference"),
]
GUIDE_FILES = [DOCS / f"{name}.md" for name, _ in PAGES if name != "cli"]
# a page may load nothing from another host: no scripts, styles, images or fonts
_REMOTE = re.compile(r"""(?:<script[^>]*\ssrc|<link[^>]*\shref|<img[^>]*\ssrc|@import\s+url\(|url\()\s*=?\s*["']?(?:https?:)?//""",
                     re.I)

sys.path.insert(0, str(DOCS))
import clidoc  # noqa: E402
from docmath import MathStore, escape_placeholders  # noqa: E402


def module_of(page: str) -> str:
    """Module name of a guide page: ``index`` is the package, the rest its modules."""
    return GUIDE if page == "index" else f"{GUIDE}.{page}"


def rewrite_links(markdown: str, page: str) -> str:
    """Turn links between guide pages (``[x](batch.md#slurm)``) into links between HTML pages."""
    from pdoc.render_helpers import relative_link

    names = {name for name, _ in PAGES}

    def repl(m: re.Match) -> str:
        target, anchor = m.group(1), m.group(2) or ""
        if target not in names:
            return m.group(0)
        href = relative_link(module_of(page), module_of(target)) or ""
        return f"]({href}{anchor})" if href or anchor else "](#)"

    return re.sub(r"\]\(([\w-]+)\.md(#[\w-]+)?\)", repl, markdown)


_TICKS = re.compile(r"`+")
_FENCE = re.compile(r"\s*(```|~~~)")
_BLOCK_START = re.compile(r"(\||#|[-*+] |\d+[.)] |>)")


def _open_span(line: str) -> bool:
    """Whether ``line`` ends inside a code span: a run of backticks not closed by a run of the same length."""
    opened = None
    for run in _TICKS.findall(line):
        opened = run if opened is None else (None if run == opened else opened)
    return opened is not None


def join_code_spans(text: str) -> str:
    """``text`` with each code span that a line break cuts (``\`astro lens`` / ``train\```) on one line.

    pdoc's Markdown ends a code span at the end of its line: a span wrapped onto the next line paired
    with the wrong backticks and ran the words around it together. The lines of a span are joined
    with one space, as Markdown reads a soft line break; fenced code, table rows, headings and list
    items are left as they are.
    """
    lines, out, fenced, i = text.split("\n"), [], False, 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            while _open_span(line) and i + 1 < len(lines):
                nxt = lines[i + 1].strip()
                if not nxt or _FENCE.match(nxt) or _BLOCK_START.match(nxt):
                    break
                line, i = f"{line.rstrip()} {nxt}", i + 1
        out.append(line)
        i += 1
    return "\n".join(out)


def stray_markup(page: str) -> list[str]:
    """The text around each backtick or dollar sign of a rendered page outside code, preformatted text,
    scripts, math and pdoc's signatures and values (Python source): a code span the Markdown did not close,
    or a formula left as LaTeX."""
    text = re.sub(r'<div class="(?:attr|signature)\b[^"]*">.*?</div>', " ", page, flags=re.S)
    text = re.sub(r"<(pre|code|script|style|textarea|math)\b.*?</\1>", " ", text, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", " ", text)
    return [" ".join(html.unescape(text[max(0, m.start() - 40):m.end() + 40]).split())
            for m in re.finditer(r"[`$]", text)]


def write_guide_package(src: Path, reference: str) -> None:
    """Write the ``guide`` package: one module per page, its docstring the page's Markdown."""
    pkg = src / GUIDE
    pkg.mkdir(parents=True)
    for name, title in PAGES:
        if name == "cli":
            text = f"# {title}\n\n{reference}"
        else:
            text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
        text = rewrite_links(text, name)
        target = pkg / ("__init__.py" if name == "index" else f"{name}.py")
        target.write_text(f"{text!r}\n\n__docformat__ = \"markdown\"\n", encoding="utf-8")


def plugin_packages() -> tuple[list[str], list[str]]:
    """Importable plugin packages (from entry points) and the problems of the others."""
    from astrotool.plugins import ENTRY_POINT_GROUP, find_entry_points

    found, problems = [], []
    for ep in sorted(find_entry_points(ENTRY_POINT_GROUP), key=lambda e: e.name):
        package = ep.value.partition(":")[0].split(".")[0]
        if package in found:
            continue
        try:
            importlib.import_module(package)
        except Exception as exc:
            problems.append(f"plugin {ep.name}: {package} does not import ({type(exc).__name__}: {exc}); "
                            "left out of the API pages")
            continue
        found.append(package)
    return found, problems


def check_guides(root) -> tuple[list[str], list[str]]:
    """Problems with ``astro ...`` command lines in the guides (errors, and warnings
    for lines that run a plugin whose commands could not be loaded)."""
    errors, warns = [], []
    for path in GUIDE_FILES:
        for line in clidoc.command_lines(path.read_text(encoding="utf-8")):
            resolved = clidoc.check_command_line(line, root)
            if not resolved.problems:
                continue
            cmd, broken = root, False  # a command group that could not mount is a stub saying why
            for word in resolved.path.split()[1:]:
                cmd = getattr(cmd, "commands", {}).get(word)
                broken = broken or bool(getattr(cmd, "broken", ""))
            where = f"{path.relative_to(ROOT)}: `astro {line}`: {'; '.join(resolved.problems)}"
            (warns if broken else errors).append(where)
    return errors, warns


def run_pdoc(modules: list[str], out: Path, store: MathStore, guide_titles: dict[str, str],
             api: list[str]) -> list[str]:
    """Render ``modules`` with pdoc into ``out``; return pdoc's warnings."""
    import pdoc
    import pdoc.docstrings
    import pdoc.render
    from pdoc.render_helpers import relative_link

    from astrotool import __version__

    convert = pdoc.docstrings.convert.__wrapped__ if hasattr(pdoc.docstrings.convert, "__wrapped__") \
        else pdoc.docstrings.convert

    @functools.cache
    def convert_protecting_math(docstring: str, docformat: str, source_file):
        return store.protect(escape_placeholders(convert(join_code_spans(docstring), docformat, source_file)))

    pdoc.docstrings.convert = convert_protecting_math
    pdoc.render.configure(
        docformat="numpy", math=False, mermaid=False, search=True, show_source=True,
        template_directory=DOCS / "templates", footer_text=f"astrotool {__version__}",
    )
    pdoc.render.env.globals.update(
        relative_link=relative_link, guide_package=GUIDE, api_packages=api,
        guide_pages=[(module_of(name), title) for name, title in PAGES], guide_titles=guide_titles,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pdoc.pdoc(*modules, output_directory=out)
        finally:
            pdoc.docstrings.convert = convert
    seen, messages = set(), []
    for w in caught:
        text = str(w.message).strip().splitlines()[0] if str(w.message).strip() else w.category.__name__
        if text not in seen and not issubclass(w.category, DeprecationWarning):
            seen.add(text)
            messages.append(text)
    return messages


def finish_math(out: Path, store: MathStore) -> int:
    """Replace the math tokens in every page and in the search index; return pages with math."""
    pages = 0
    for path in out.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        new = store.restore(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            pages += "<math" in new
    search = out / "search.js"
    if search.exists():
        search.write_text(store.restore(search.read_text(encoding="utf-8"), json_strings=True), encoding="utf-8")
    return pages


def verify(out: Path, paths: list[str], store: MathStore) -> list[str]:
    """Problems in the built site: remote resources, math left over, commands missing."""
    problems = []
    for path in sorted(out.rglob("*")):
        if path.suffix not in (".html", ".js") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(out)
        if _REMOTE.search(text) or re.search(r"mathjax|cdn\.jsdelivr|unpkg\.com|cdnjs", text, re.I):
            problems.append(f"{rel}: loads something from the network")
        if store.prefix in text:
            problems.append(f"{rel}: math placeholder left in the page")
        if path.suffix == ".html":
            stray = stray_markup(text)
            if stray:
                problems.append(f"{rel}: {len(stray)} backtick(s) or dollar sign(s) outside code and math (a code "
                                f"span not closed, a formula not rendered): ...{stray[0]}...")
            ids = set(re.findall(r'\sid="([^"]+)"', text))
            broken = sorted({h for h in re.findall(r'href="#([^"$]+)"', text) if html.unescape(h) not in ids})
            if broken:
                problems.append(f"{rel}: links to anchors that are not on the page: {', '.join(broken)}")
    cli = out / GUIDE / "cli.html"
    html_text = cli.read_text(encoding="utf-8") if cli.exists() else ""
    for p in paths:
        if f'id="{"-".join(p.split())}"' not in html_text:
            problems.append(f"{cli.relative_to(out) if cli.exists() else 'guide/cli.html'}: no section for `{p}`")
    overview = out / f"{GUIDE}.html"
    if overview.exists() and "<math" not in overview.read_text(encoding="utf-8"):
        problems.append(f"{GUIDE}.html: its formula was not rendered as MathML")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("``", "`"))
    parser.add_argument("--out", type=Path, default=BUILD / "html",
                        help="output folder (default: docs/_build/html, the CLI reference's Markdown in "
                             "docs/_build/cli.md; with another folder, in it)")
    args = parser.parse_args(argv)
    t0 = time.time()
    out = args.out.resolve()

    # 1. the CLI reference, from the real command tree with every plugin loaded
    load_problems: list[clidoc.LoadProblem] = []
    root = clidoc.root_command(load_problems)
    reference = clidoc.cli_reference_markdown(root)
    paths = clidoc.command_paths(root)
    missing = clidoc.missing_from_reference(reference, root)
    errors = [f"CLI reference: missing {m}" for m in missing]
    notes = [f"command group `{p.path}` could not be loaded: {p.error}" for p in load_problems]

    # 2. the guide's command lines must name real commands and options
    guide_errors, guide_warnings = check_guides(root)
    errors += guide_errors
    notes += guide_warnings

    # 3. one pdoc run over the guide, the core and the plugins
    import tempfile

    src = Path(tempfile.mkdtemp(prefix="astro-docs-"))   # the guide as a package, for pdoc only
    write_guide_package(src, reference)
    sys.path.insert(0, str(src))
    plugins, plugin_problems = plugin_packages()
    notes += plugin_problems
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    md = BUILD / "cli.md" if out == (BUILD / "html").resolve() else out / "cli.md"   # inside --out DIR
    md.write_text(reference, encoding="utf-8")
    store = MathStore()
    api = ["astrotool", *plugins]
    titles = {module_of(name): title for name, title in PAGES}
    try:
        notes += [f"pdoc: {w}" for w in run_pdoc([GUIDE, *api], out, store, titles, api)]
    finally:
        shutil.rmtree(src, ignore_errors=True)

    # 4. math to MathML, then check the result
    pages_with_math = finish_math(out, store)
    notes += [f"math: cannot convert {f}" for f in store.failed]
    errors += verify(out, paths, store)

    for n in notes:
        print(f"warning: {n}", file=sys.stderr)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    n_pages = sum(1 for _ in out.rglob("*.html"))
    print(f"docs: {n_pages} pages ({len(api)} packages: {', '.join(api)}; {len(paths)} commands in the CLI "
          f"reference; {len(store.formulas)} formulas on {pages_with_math} pages) -> {out} "
          f"in {time.time() - t0:.1f} s")
    if errors:
        print(f"docs: {len(errors)} error(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
