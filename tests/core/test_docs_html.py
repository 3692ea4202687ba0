"""The rendered documentation: ``<placeholders>`` stay visible, intra-page anchors resolve, formulas are MathML."""

from __future__ import annotations

import html
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS))
try:
    import docmath
finally:
    sys.path.remove(str(DOCS))

pdoc = pytest.importorskip("pdoc")
pytest.importorskip("latex2mathml")

# every module whose docstrings or option help name files with <placeholders>
MODULES = ["astrotool_plato.cli", "astrotool_lens.cli", "astrotool_lens.kappa.cli", "astrotool_dre.cli",
           "astrotool_lens.config", "astrotool_lens.kappa.config", "astrotool_dre.config", "astrotool_lens.measure",
           "astrotool.ml.data", "astrotool_ztf.cli"]
_CODE = re.compile(r"``?[^`]+``?")
_PLACEHOLDER = re.compile(r"<[A-Za-z_][^<>\s]*>")


def _render(text: str, store=None) -> str:
    """A numpy docstring as the documentation build renders it (pdoc's conversion, then Markdown)."""
    from pdoc.docstrings import convert

    md = convert(text, "numpy", None)
    return docmath.markdown_to_html(md, store)


def _docstrings(module_name: str):
    mod = importlib.import_module(module_name)
    yield module_name, mod.__doc__ or ""
    for name, obj in vars(mod).items():
        if getattr(obj, "__module__", None) != module_name:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield f"{module_name}.{name}", inspect.getdoc(obj) or ""
        for fname, field in (getattr(obj, "model_fields", None) or {}).items():
            yield f"{module_name}.{name}.{fname}", field.description or ""


def _visible_text(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", rendered))


@pytest.mark.parametrize("module_name", MODULES)
def test_no_placeholder_is_lost(module_name):
    """``lens/predictions/<stem>_<model>.parquet`` must not read ``lens/predictions/_.parquet``."""
    checked = 0
    for where, text in _docstrings(module_name):
        wanted = _PLACEHOLDER.findall(_CODE.sub("", text))
        if not wanted:
            continue
        shown = _visible_text(_render(text))
        for ph in wanted:
            assert ph in shown, f"{where}: {ph} vanished from the rendered text"
            checked += 1
    if module_name in ("astrotool_plato.cli", "astrotool_lens.cli", "astrotool_lens.kappa.config"):
        assert checked >= 2  # NAME<first>-<last>_lightcurves, <stem>_<model>.parquet, <report>_score.json


def test_placeholders_in_code_are_not_escaped_twice():
    out = docmath.markdown_to_html("a `<stem>.fits` and\n\n```\nx <model>\n```\n\n    y <n>\n\nthen <first>-<last>")
    assert "&amp;lt;" not in out
    assert _visible_text(out).count("<stem>") == 1 and "<first>-<last>" in _visible_text(out)


def test_intra_page_anchors_resolve(tmp_path):
    """Base classes and cross-references link to anchors that exist on the page (no ``#_Model`` to nowhere)."""
    import pdoc.render

    pdoc.render.configure(docformat="numpy", math=False, search=False, show_source=False)
    mods = ["astrotool_lens.config", "astrotool_lens.kappa.config", "astrotool_dre.config"]
    pdoc.pdoc(*mods, output_directory=tmp_path)
    broken = {}
    for page in tmp_path.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        ids = set(re.findall(r'\sid="([^"]+)"', text))
        missing = sorted({h for h in re.findall(r'href="#([^"]+)"', text) if html.unescape(h) not in ids})
        if missing:
            broken[str(page.relative_to(tmp_path))] = missing
    assert not broken, broken


def test_fitting_formulas_are_mathml():
    """The DRE fit, the shear conversion and the GREAT3 metric are written as math and rendered as MathML."""
    for name, displays in (("astrotool_dre.chi2", 3), ("astrotool_lens.evaluate", 1), ("astrotool_lens.measure", 0)):
        store = docmath.MathStore()
        out = _render(importlib.import_module(name).__doc__, store)
        assert not store.failed, store.failed
        assert len(re.findall(r'<math[^>]*display="block"', out)) >= displays, name
        assert out.count("<math") >= 3, name
        assert "sum(w d m_k)" not in out and "X2_k" not in out and "sqrt(" not in out, name
