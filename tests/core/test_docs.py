"""The documentation: CLI reference completeness, guide pages, math without a CDN.

The full pdoc build is ``make docs`` (it runs the same checks on the real site);
these tests cover its parts quickly.
"""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import typer

from astrotool.context import GLOBAL_OPTIONS
from astrotool.plugins import ENTRY_POINT_GROUP, find_entry_points, set_registry

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDES = ["index", "quickstart", "configuration", "workspace", "batch", "ml", "dre", "lens", "lens_kappa", "plato", "ztf",
          "plugins"]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_astro_docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(DOCS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DOCS))
    return module


clidoc = _load("clidoc")  # docs tooling: beside docs/build.py, not in the astrotool package


@pytest.fixture(scope="module")
def root():
    set_registry(None)  # the installed plugins, whatever an earlier test registered
    yield clidoc.root_command()
    set_registry(None)


@pytest.fixture(scope="module")
def reference(root):
    return clidoc.cli_reference_markdown(root)


# ------------------------------------------------------------------ CLI reference
def test_every_command_and_option_is_in_the_reference(root, reference):
    paths = clidoc.command_paths(root)
    for core in ["astro", "astro init", "astro status", "astro config show", "astro config validate",
                 "astro config schema", "astro plugins", "astro doctor", "astro demo"]:
        assert core in paths
    for ep in find_entry_points(ENTRY_POINT_GROUP):  # every installed plugin's group
        assert f"astro {ep.name}" in paths
    assert clidoc.missing_from_reference(reference, root) == []
    sections = clidoc.reference_sections(reference)
    assert set(paths) <= set(sections)
    for name in [n for o in GLOBAL_OPTIONS for n in o.names]:
        assert re.search(rf"`(-[\w-]+, )*{name}(, -[\w-]+)*`", sections["astro"]), name


def test_missing_command_or_option_is_reported(root, reference):
    cut = re.sub(r"^## astro config show\n.*?(?=^## )", "", reference, flags=re.M | re.S)
    assert "## astro config show\n" not in cut
    assert clidoc.missing_from_reference(cut, root) == ["astro config show"]

    show = clidoc.reference_sections(reference)["astro config show"]
    no_option = reference.replace(show, show.replace("`--sources`", "`--srcs`"))
    assert clidoc.missing_from_reference(no_option, root) == ["astro config show --sources"]

    no_global = reference.replace("`--shard`", "`--part`")
    assert "astro --shard" in clidoc.missing_from_reference(no_global, root)


def test_walker_recurses_into_nested_groups():
    app = typer.Typer()
    sub = typer.Typer(help="A group.")
    deeper = typer.Typer(help="A nested group.")

    @deeper.command()
    def leaf(n: int = typer.Option(3, "--n", help="How many | which.")):
        """Do a thing with a_b and *stars*."""

    @sub.command()
    def other():
        """Another."""

    sub.add_typer(deeper, name="deeper")
    app.add_typer(sub, name="grp")

    @app.callback()
    def main():
        """Toy."""

    tree = typer.main.get_command(app)
    assert clidoc.command_paths(tree) == ["astro", "astro grp", "astro grp other", "astro grp deeper",
                                          "astro grp deeper leaf"]
    md = clidoc.cli_reference_markdown(tree)
    leaf_section = clidoc.reference_sections(md)["astro grp deeper leaf"]
    assert "`--n`" in leaf_section and "integer" in leaf_section and "| 3 |" in leaf_section
    assert "How many &#124; which." in leaf_section  # a pipe does not break the table
    assert r"a\_b and \*stars\*" in leaf_section


def test_plugin_that_cannot_load_is_documented_as_such(monkeypatch):
    from astrotool.hookspecs import CommandSpec, hookimpl
    from astrotool.plugins import Registry

    class Broken:
        @hookimpl
        def astro_commands(self):
            return [CommandSpec("ghost", "no_such_module_xyz.cli:app", "A missing plugin.")]

    set_registry(Registry(entry_points=False, extra=[Broken()]))
    try:
        problems = []
        tree = clidoc.root_command(problems)
        assert [p.path for p in problems] == ["astro ghost"]
        md = clidoc.cli_reference_markdown(tree)
        assert "No module named" in clidoc.reference_sections(md)["astro ghost"]
    finally:
        set_registry(None)


# ------------------------------------------------------------------ guide pages
def test_guide_pages_exist():
    for name in GUIDES:
        text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith("# "), name
    batch = (DOCS / "batch.md").read_text(encoding="utf-8")
    for needle in ["--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT", "--executor process -j",
                   "--executor dask --scheduler tcp://", "dask scheduler", "dask worker", "dask_jobqueue",
                   "--log-format json", "SIGTERM", "| 0 |", "| 1 |", "| 2 |"]:
        assert needle in batch, needle
    config = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for needle in ["config show --sources", "ASTRO_<SECTION>__<KEY>", "--set", "config validate",
                   "config schema", "--cfg"]:
        assert needle in config, needle
    workspace = (DOCS / "workspace.md").read_text(encoding="utf-8")
    for needle in ["runs/<utc>-<command>/run.json", "--overwrite", "atomic"]:
        assert needle in workspace, needle


def test_guide_links_point_to_pages():
    names = set(GUIDES) | {"cli"}
    for name in GUIDES:
        for target in re.findall(r"\]\(([\w-]+)\.md(?:#[\w-]+)?\)", (DOCS / f"{name}.md").read_text()):
            assert target in names, f"{name}.md links to missing page {target}.md"


@pytest.mark.parametrize("page", GUIDES)
def test_guide_command_lines_are_real_commands(root, page):
    lines = clidoc.command_lines((DOCS / f"{page}.md").read_text(encoding="utf-8"))
    problems = [f"astro {line}: {p}" for line in lines for p in clidoc.check_command_line(line, root).problems]
    assert not problems, "\n".join(problems)


def test_command_line_checker_finds_mistakes(root):
    assert clidoc.check_command_line("-q config show --sources --json", root) == ("astro config show", [])
    assert clidoc.check_command_line("--cfg a.toml --shard $I/$N status --json", root).problems == []
    assert clidoc.check_command_line("config shwo", root).problems == ["astro config: no such command 'shwo'"]
    assert clidoc.check_command_line("config show --nope", root).problems == \
        ["astro config show: no such option --nope"]
    assert clidoc.check_command_line("nosuchgroup run", root).problems


def test_command_lines_are_extracted_from_markdown():
    md = """Run `astro status` or `astro config show core`, not `astronomy`.

```bash
#SBATCH --array=0-3
export ASTRO_WORKSPACE=/scratch/ws   # astro here is a comment
srun .venv/bin/astro --executor process \\
    --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT plato simulate  # resumable
astro init ws && astro -w ws status
```

```toml
# astro status (TOML is not a shell)
```
"""
    assert clidoc.command_lines(md) == [
        "--executor process --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT plato simulate",
        "init ws", "-w ws status", "status", "config show core"]


def test_example_machine_configs_are_valid():
    from astrotool.config import validate_file

    files = sorted((ROOT / "config").glob("*.toml"))
    assert {f.stem for f in files} >= {"laptop", "gpu-node", "cluster", "ci"}
    for f in files:
        validate_file(f)  # raises ConfigError naming the file and key


# ------------------------------------------------------------------ math and build helpers
def test_math_becomes_mathml_without_a_cdn():
    pytest.importorskip("latex2mathml")
    docmath = _load("docmath")
    md = (r"The fit minimises $\chi^2_k = \sum_p w_p (d_p - a_k m_{kp})^2$ for my_snake_case model."
          "\n\n$$a_k = \\frac{\\sum_p w_p d_p m_{kp}}{\\sum_p w_p m_{kp}^2}$$\n\n"
          "It costs $5, and `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` stays code.")
    html = docmath.markdown_to_html(md)
    assert html.count("<math") == 2
    assert 'display="block"' in html
    assert "<msub><mi>w</mi><mi>p</mi></msub>" in html  # a subscript, not emphasis
    assert "<em>" not in html and "my_snake_case" in html
    assert "<code>--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT</code>" in html
    assert "costs $5" in html
    assert "cdn" not in html.lower() and "mathjax" not in html.lower() and "ASTROMATHTOKEN" not in html


def test_rst_math_role_and_search_index():
    pytest.importorskip("latex2mathml")
    import pdoc.docstrings

    docmath = _load("docmath")
    store = docmath.MathStore()
    md = store.protect(pdoc.docstrings.convert("Weights :math:`w_p = 1/\\sigma_p^2`.", "numpy", None))
    assert "\\sigma" not in md and store.formulas == [("w_p = 1/\\sigma_p^2", False)]
    js = store.restore('{"doc": "<p>Weights ' + md.split()[1] + '.</p>"}', json_strings=True)
    assert '<math xmlns=\\"http://www.w3.org/1998/Math/MathML\\"' in js


def test_guide_links_become_html_links():
    build = _load("build")
    assert build.rewrite_links("[b](batch.md#exit-codes)", "index") == "[b](guide/batch.html#exit-codes)"
    assert build.rewrite_links("[b](batch.md)", "quickstart") == "[b](batch.html)"
    assert build.rewrite_links("[o](index.md)", "workspace") == "[o](../guide.html)"
    assert build.rewrite_links("[x](other.md)", "index") == "[x](other.md)"


def test_a_code_span_cut_by_a_line_break_is_rendered_whole():
    """pdoc's Markdown ended a code span at the end of its line: "(`astro lens train`,\n`lens kappa\ntrain`)"
    rendered as "(`astro lens train,lens kappa train`)" with the words run together."""
    pytest.importorskip("pdoc")
    build = _load("build")
    text = "read by (`astro lens train`,\n`lens kappa\ntrain`) through `Runtime`\n\n``a\nb`` and `<file>`"
    joined = build.join_code_spans(text)
    assert "`lens kappa train`" in joined and "``a b``" in joined
    assert build.join_code_spans("```\nx `y\nz\n```") == "```\nx `y\nz\n```"   # fenced code kept as it is
    assert build.join_code_spans("a `x\n- item") == "a `x\n- item"           # a list item is not joined
    html = _load("docmath").markdown_to_html(joined)
    assert build.stray_markup(html) == [] and "<code>lens kappa train</code>" in html
    assert build.stray_markup(_load("docmath").markdown_to_html(text))   # unjoined: the check finds the break
    assert build.stray_markup(_load("docmath").markdown_to_html("smoothing $s = $ `k` $\\times m$"))
    assert not build.stray_markup(_load("docmath").markdown_to_html("smoothing $s = k m$ and `$HOME`"))


def test_pdoc_renders_a_module_docstring_with_mathml(tmp_path, monkeypatch):
    pytest.importorskip("latex2mathml")
    pytest.importorskip("pdoc")
    build = _load("build")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "chi2mod.py").write_text(
        'r"""Fit statistic $\\chi^2_k = \\sum_p w_p (d_p - a_k m_{kp})^2$ per model_k.\n\n'
        'Parameters\n----------\nw_p : float\n    Weight :math:`1/\\sigma_p^2`.\n"""\n'
        '__docformat__ = "numpy"\n\n\ndef f(w_p):\n    """Return $a_k$."""\n')
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    out = tmp_path / "html"
    store = build.MathStore()
    warnings = build.run_pdoc(["chi2mod"], out, store, {}, ["chi2mod"])
    build.finish_math(out, store)
    page = (out / "chi2mod.html").read_text(encoding="utf-8")
    assert page.count("<math") == 3, warnings
    assert "<msub><mi>w</mi><mi>p</mi></msub>" in page and "model_k" in page
    assert "mathjax" not in page.lower() and "cdn." not in page.lower()
    assert build.verify(out, [], store) == []
