"""Every ```python block of README.md and docs/ runs, at tiny sizes, and what a page shows is checked.

The rules (markers, stand-ins for the prose's placeholder names, tiny mode) are in
``tests/docs/docs_snippets.py`` and, for readers, in docs/howto/index.md. One test per block,
named ``page:line``; the blocks of a page share one namespace and run in order (asking
for a later block runs the earlier ones first). A marked block (``not-executed``) and a
block whose optional need is absent are skipped with the reason; the run prints how many
blocks ran, were marked and were skipped.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import logging
import re

import pytest

from .docs_snippets import (
    NEEDS,
    PAGE_SETUP,
    PAGES,
    ROOT,
    STAND_IN_NEEDS,
    STAND_INS,
    Block,
    code_of,
    find_blocks,
    free_names,
    missing_needs,
    shrink,
    tiny_call,
)

BLOCKS = [block for page in PAGES for block in find_blocks(page)]

#: Blocks whose printed output the page describes: (page, nth python block of the page) -> what it shows.
SHOWN_OUTPUT = {
    ("README.md", 0): ["roc_auc", "accuracy", "count", "tpr", "fpr"],  # the MetricFrame's columns
}

#: Blocks of pages this test's authors do not own that cannot run here today, not yet marked by their
#: owners: (page, a line of the block, reason). They are xfailed without running (they would hang).
KNOWN_BROKEN: list[tuple[str, str, str]] = []


def _known_broken(block: Block) -> str | None:
    page = str(block.page.relative_to(ROOT))
    return next((why for where, line, why in KNOWN_BROKEN if where == page and line in block.source), None)

_pages: dict = {}   # page -> {"ns": namespace, "done": set of lines, "tmp": folder, "config": sklearn config}
_counts = {"ran": 0, "doctest": 0, "marked": 0, "skipped": 0, "xfailed": 0}


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    found = len(BLOCKS)
    line = (f"docs snippets: {found} python blocks in {len({b.page for b in BLOCKS})} pages; "
            f"ran {_counts['ran']} (of them {_counts['doctest']} doctests), "
            f"{_counts['marked']} marked not-executed, {_counts['skipped']} skipped for a missing extra, "
            f"{_counts['xfailed']} known broken (xfail)")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n" + line)


def _page_state(block: Block, tmp_path_factory, monkeypatch) -> dict:
    state = _pages.get(block.page)
    if state is None:
        import numpy as np
        import optuna
        import pandas as pd

        import skfairtune
        import skfairtune.datasets

        folder = tmp_path_factory.mktemp(re.sub(r"\W", "_", block.page.stem))
        (folder / "runs").mkdir()
        ns = {"__name__": "__docs__", "np": np, "pd": pd, "optuna": optuna, "_docs_tiny_call": tiny_call}
        ns.update({name: getattr(skfairtune, name) for name in skfairtune.__all__})
        ns.update({name: getattr(skfairtune.datasets, name) for name in skfairtune.datasets.__all__})
        setup = PAGE_SETUP.get(str(block.page.relative_to(ROOT)), "")
        page_blocks = [b for b in BLOCKS if b.page == block.page and b.not_executed is None]
        for name in sorted(free_names([setup] + [code_of(b) for b in page_blocks]) - set(ns)):
            need = STAND_IN_NEEDS.get(name)
            if name in STAND_INS and (need is None or NEEDS[need][0]()):
                ns[name] = STAND_INS[name]()
        state = _pages[block.page] = {"ns": ns, "done": set(), "tmp": folder, "config": {}}
        if setup:
            with _isolated(state, monkeypatch):
                exec(compile(setup, f"{block.page.name} (set-up)", "exec"), dict(ns))
    return state


@contextlib.contextmanager
def _isolated(state, monkeypatch):
    """Run in the page's folder; put back sklearn's config, logging and figures afterwards."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import sklearn

    monkeypatch.chdir(state["tmp"])
    root, ours = logging.getLogger(), logging.getLogger("skfairtune")
    handlers, levels = list(root.handlers), (root.level, ours.level)
    try:
        with sklearn.config_context(**state["config"]):
            yield
            state["config"] = sklearn.get_config()
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
        plt.close("all")


def _run(block: Block, state: dict) -> str:
    out = io.StringIO()
    if block.is_doctest:
        test = doctest.DocTestParser().get_doctest(shrink(block.source), state["ns"], block.where,
                                                   str(block.page), block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=out.write, clear_globs=False)
        state["ns"].update(test.globs)  # a DocTest runs in a copy of the namespace it is given
        assert runner.failures == 0, f"{block.where}: the shown output differs:\n{out.getvalue()}"
        _counts["doctest"] += 1
    else:
        code = compile(shrink(block.source), f"{block.where}", "exec")
        with contextlib.redirect_stdout(out):
            exec(code, state["ns"])
    return out.getvalue()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_docs_block_runs(block, tmp_path_factory, monkeypatch):
    if _known_broken(block):
        _counts["xfailed"] += 1
        pytest.xfail(_known_broken(block))
    if block.not_executed is not None:
        _counts["marked"] += 1
        pytest.skip(f"marked not-executed: {block.not_executed}")
    missing = missing_needs(block)
    if missing:
        _counts["skipped"] += 1
        pytest.skip("; ".join(missing))
    state = _page_state(block, tmp_path_factory, monkeypatch)
    page_blocks = [b for b in BLOCKS if b.page == block.page]
    for earlier in page_blocks[:page_blocks.index(block)]:
        if (earlier.line not in state["done"] and earlier.not_executed is None and not missing_needs(earlier)
                and not _known_broken(earlier)):
            with _isolated(state, monkeypatch):
                _run(earlier, state)
            state["done"].add(earlier.line)
    with _isolated(state, monkeypatch):
        printed = _run(block, state)
    print(printed)  # shown with pytest -s, e.g. to read the times a page quotes
    state["done"].add(block.line)
    _counts["ran"] += 1
    key = (str(block.page.relative_to(ROOT)), page_blocks.index(block))
    for shown in SHOWN_OUTPUT.get(key, ()):
        assert shown in printed, f"{block.where} should print {shown!r}; it printed:\n{printed[-2000:]}"


def test_every_python_block_is_found_and_accounted_for():
    """The parser sees every fence, and a marked block says why it is not run."""
    for page in PAGES:
        fences = sum(1 for line in page.read_text().splitlines() if line.startswith("```python"))
        assert fences == sum(b.page == page for b in BLOCKS), f"{page}: a ```python fence was not parsed"
    for block in BLOCKS:
        assert block.not_executed is None or len(block.not_executed) > 10, f"{block.where}: say why it is not run"
        missing_needs(block)  # raises on an unknown need
    marked = [b for b in BLOCKS if b.not_executed is not None]
    # Almost everything runs: a page that stops running should be fixed, not marked.
    assert len(marked) <= len(BLOCKS) // 8, [b.where for b in marked]


def test_getting_started_shows_what_fit_logs_and_warns_about_the_budget(caplog):
    """The split of n_trials and the warning, as docs/getting_started.md shows them, are what fit says."""
    from skfairtune import FairTuneSearchCV
    from skfairtune.datasets import make_biased_images

    from ..conftest import tiny_classifier

    page = (ROOT / "docs" / "getting_started.md").read_text()
    shown = re.findall(r"```text\n(.*?)\n```", page, flags=re.S)
    log_line = next(text for text in shown if text.startswith("n_trials="))
    warning = next(text for text in shown if text.startswith("UserWarning: n_trials="))
    n_trials = int(re.match(r"UserWarning: n_trials=(\d+)", warning).group(1))
    data = make_biased_images(120, image_size=16, random_state=0)
    search = FairTuneSearchCV(tiny_classifier(max_epochs=1), n_trials=n_trials, random_state=0)
    with caplog.at_level(logging.INFO, logger="skfairtune"), pytest.warns(UserWarning) as warned:
        search.fit(data.images, data.target, sensitive_features=data.sensitive_features)
    assert warning.removeprefix("UserWarning: ") in [str(w.message) for w in warned]
    logged = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("n_trials="))
    assert re.fullmatch(re.sub(r"\d+", r"\\d+", re.escape(log_line)), logged), (log_line, logged)
    assert logged == f"n_trials={n_trials}: 16 baseline trials, 0 random start-up masks, 0 TPE-guided masks"
    assert all(b is not None for b in search.cv_results_["baseline"])  # what the warning says: no searched mask
