"""LaTeX math in docstrings and guide pages, rendered to MathML at build time.

pdoc's ``--math`` loads MathJax from a CDN when a page is viewed; clusters and
laptops on a train have no internet, so the documentation build converts math
to MathML (which browsers render natively) with ``latex2mathml`` instead.

It works in two steps around pdoc's Markdown pass, so that Markdown never sees
the math (and cannot turn ``a_k m_{kp}`` into emphasis):

1. :meth:`MathStore.protect` replaces each formula in a Markdown text (after
   pdoc has converted a numpy/reST docstring to Markdown) with an inert token;
2. :meth:`MathStore.restore` replaces the tokens in the rendered HTML (and in
   the search index) with MathML.

Recognised: ``$...$`` (inline; no space after the opening or before the closing
``$``, not followed by a digit, so ``$5`` and ``$HOME`` stay text), ``$$...$$``
(display), ``\\(...\\)`` (inline) and reST ``:math:`...``` roles and
``.. math::`` directives (pdoc turns those into the forms above). Code spans,
fenced code blocks and doctest lines are left alone.
"""

from __future__ import annotations

import html
import json
import re
import warnings

__docformat__ = "numpy"

_FENCE = re.compile(r"^([ \t]*)(```+|~~~+).*?^\1\2[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(?<!\\)(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_DOCTEST = re.compile(r"^[ \t]*(>>>|\.\.\.)( .*)?$", re.M)
_PRE = re.compile(r"<pre\b.*?</pre>", re.S | re.I)
_MATH = re.compile(
    r"\$\$(?P<display>.+?)\$\$"
    r"|\\\\\((?P<role>.+?)\\\\\)"  # pdoc's rendering of :math:`...` is \\( ... \\)
    r"|\\\((?P<paren>.+?)\\\)"
    r"|(?<![\\$\w])\$(?![\s$])(?P<inline>[^$\n]*?(?:\n(?!\s*\n)[^$\n]*?)*?)(?<![\s\\])\$(?![\d$])",
    re.S,
)


class MathStore:
    """Formulas taken out of Markdown and the MathML that replaces them.

    Parameters
    ----------
    prefix : str
        Letters that start every token; tokens are ``<prefix><n>Q``.
    """

    def __init__(self, prefix: str = "ASTROMATHTOKEN"):
        self.prefix = prefix
        self.formulas: list[tuple[str, bool]] = []  # (latex, display)
        self.failed: list[str] = []
        self._token = re.compile(rf"{re.escape(prefix)}(\d+)Q")

    # -- step 1 ------------------------------------------------------------------
    def protect(self, markdown: str) -> str:
        """Replace every formula outside code with a token; return the new text."""
        if "$" not in markdown and "\\(" not in markdown:
            return markdown
        return outside_code(markdown, lambda text: _MATH.sub(self._tokenize, text),
                            (_FENCE, _PRE, _DOCTEST, _CODE_SPAN))

    def _tokenize(self, m: re.Match) -> str:
        if m.group("display") is not None:
            latex, display = m.group("display"), True
        else:
            latex = next(g for g in (m.group("role"), m.group("paren"), m.group("inline")) if g is not None)
            display = False
        latex = latex.strip()
        if not latex:
            return m.group(0)
        self.formulas.append((latex, display))
        return f"{self.prefix}{len(self.formulas) - 1}Q"

    # -- step 2 ------------------------------------------------------------------
    def mathml(self, index: int) -> str:
        """The MathML of formula ``index`` (the LaTeX in ``<code>`` if it cannot be converted)."""
        from latex2mathml.converter import convert

        latex, display = self.formulas[index]
        try:
            return convert(latex, display="block" if display else "inline")
        except Exception as exc:  # an unsupported command: show the source, never fail the build
            self.failed.append(f"{latex!r}: {type(exc).__name__}: {exc}")
            warnings.warn(f"math: cannot convert {latex!r}: {exc}", stacklevel=2)
            return f'<code class="math">{html.escape(latex)}</code>'

    def restore(self, text: str, json_strings: bool = False) -> str:
        """Replace tokens in rendered HTML (or in a JavaScript file holding JSON strings).

        A token that ended up inside a tag (an ``id`` built from a heading) becomes
        plain letters; elsewhere it becomes MathML.
        """
        if self.prefix not in text:
            return text
        out, pos = [], 0
        for m in self._token.finditer(text):
            index = int(m.group(1))
            if index >= len(self.formulas):
                continue
            out.append(text[pos:m.start()])
            before = text[:m.start()]
            if not json_strings and before.rfind("<") > before.rfind(">"):
                out.append(re.sub(r"\W+", "-", self.formulas[index][0]).strip("-") or "math")
            else:
                value = self.mathml(index)
                out.append(json.dumps(value)[1:-1] if json_strings else value)
            pos = m.end()
        out.append(text[pos:])
        return "".join(out)


_INDENTED = re.compile(r"(?:^|(?<=\n\n))(?:(?: {4}|\t)[^\n]*\n?)+")
_PLACEHOLDER = re.compile(r"<(?![a-z]+://|mailto:)(?=/?[A-Za-z_][^<>\n]*>)")  # not an autolink <https://...>


def escape_placeholders(markdown: str) -> str:
    """Keep ``<stem>``, ``<first>-<last>``, ``</x>`` placeholders as text outside code.

    Markdown passes anything that looks like a tag through as raw HTML, where the
    browser hides it: ``lens/predictions/<stem>_<model>.parquet`` would read
    ``lens/predictions/_.parquet``. The docstrings and guide pages hold no raw
    HTML, so every ``<`` that opens something tag-like outside code spans, fenced,
    indented and ``<pre>`` blocks and doctest lines becomes ``&lt;``.
    """
    if "<" not in markdown:
        return markdown
    return outside_code(markdown, lambda text: _PLACEHOLDER.sub("&lt;", text),
                        (_FENCE, _PRE, _INDENTED, _DOCTEST, _CODE_SPAN))


def outside_code(markdown: str, transform, code_patterns) -> str:
    """Apply ``transform`` to the text outside what ``code_patterns`` match (in that order).

    Each code match is set aside behind a ``\\x00N\\x00`` token, the rest is transformed,
    then the code is put back unchanged.
    """
    keep: list[str] = []

    def hold(m: re.Match) -> str:
        keep.append(m.group(0))
        return f"\x00{len(keep) - 1}\x00"

    text = markdown
    for pattern in code_patterns:
        text = pattern.sub(hold, text)
    return re.sub(r"\x00(\d+)\x00", lambda m: keep[int(m.group(1))], transform(text))


def markdown_to_html(markdown: str, store: MathStore | None = None) -> str:
    """Render a Markdown text the way pdoc does, with math as MathML (used by tests).

    Parameters
    ----------
    markdown : str
        Markdown with LaTeX math.
    store : MathStore, optional
        Where formulas are kept (a new one by default).
    """
    from pdoc.render_helpers import to_html

    store = store or MathStore()
    return store.restore(str(to_html(store.protect(escape_placeholders(markdown)))))
