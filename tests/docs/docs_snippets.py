"""Find, shrink and run the Python code blocks of README.md and docs/ (used by test_docs_executed.py).

How a page is run (also told to users in docs/howto/index.md, "The documentation is executed"):

- Every ```python block of a page runs in order in one namespace, like the cells of a
  notebook, in an empty temporary folder that holds an empty ``runs/`` folder. A block
  written with ``>>>`` prompts is a doctest: its shown output is checked.
- Names a block uses without defining them are the placeholders of prose such as
  ``search.fit(X, y, sensitive_features=s)``; :data:`STAND_INS` defines each one with tiny
  data and a tiny model (``X``, ``y``, ``s``, ``clf``, a fitted ``search``, ...).
- Tiny mode (``SKFAIRTUNE_DOCS_TINY=1``, the default) rewrites budgets before running:
  see :data:`TINY_REWRITES`. ``SKFAIRTUNE_DOCS_TINY=0`` runs the numbers as written (slow).
- An HTML comment on the line before a block (blank lines between are allowed) marks it:
  ``<!-- not-executed: why -->`` (counted apart, never run), or ``<!-- needs: peft, postgres -->``
  (skipped with the reason when one of :data:`NEEDS` is absent).
"""

from __future__ import annotations

import builtins
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HAM10000 = ROOT.parent / "shared" / "data" / "ham10000"
PAGES = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)

FENCE = re.compile(r"^```python\s*$")
MARKER = re.compile(r"^<!--\s*(not-executed|needs)\s*:\s*(.*?)\s*-->\s*$")

#: Tiny mode: (pattern, largest value) pairs. A number above the largest value is lowered to it.
TINY_REWRITES = {
    r"\bn_trials=(\d+)": 4,
    r"\bmax_epochs=(\d+)": 2,
    r"\bmake_biased_images\((\d+)": 200,
    r"\bn_boot=(\d+)": 20,
    r"\bn_bootstrap=(\d+)": 20,
}
#: Tiny mode: calls of these functions go through :func:`tiny_call`, which caps these arguments.
TINY_CALLS = {"load_ham10000": {"n_samples": 400, "image_size": 16}}


def tiny_call(function):
    """``function`` with the arguments of :data:`TINY_CALLS` capped (a missing one is set)."""
    caps = TINY_CALLS[function.__name__]

    def capped(*args, **kwargs):
        for name, largest in caps.items():
            kwargs[name] = largest if kwargs.get(name) is None else min(kwargs[name], largest)
        kwargs.setdefault("random_state", 0)
        return function(*args, **kwargs)
    return capped


def tiny() -> bool:
    return os.environ.get("SKFAIRTUNE_DOCS_TINY", "1") != "0"


def shrink(source: str) -> str:
    """The block as run in tiny mode: every budget of :data:`TINY_REWRITES` capped."""
    if not tiny():
        return source
    for pattern, largest in TINY_REWRITES.items():
        def cap(match, largest=largest):
            whole, number = match.group(0), match.group(1)
            return whole[: match.start(1) - match.start(0)] + str(min(int(number), largest))
        source = re.sub(pattern, cap, source)
    for name in TINY_CALLS:
        source = re.sub(rf"\b{name}\(", f"_docs_tiny_call({name})(", source)
    return source


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    source: str
    not_executed: str | None = None  # the reason, when marked
    needs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_doctest(self) -> bool:
        return self.source.lstrip().startswith(">>>")


def find_blocks(page: Path) -> list[Block]:
    """The ```python blocks of a page, each with the marker of the comment before it."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            block = Block(page, i + 1, "\n".join(lines[i + 1:end]) + "\n")
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = MARKER.match(lines[k].strip()) if k >= 0 else None
            if marker and marker.group(1) == "not-executed":
                block.not_executed = marker.group(2)
            elif marker:
                block.needs = tuple(n.strip() for n in marker.group(2).split(",") if n.strip())
            blocks.append(block)
            i = end
        i += 1
    return blocks


def code_of(block: Block) -> str:
    """Plain Python of a block (a doctest's source lines without the prompts)."""
    if not block.is_doctest:
        return block.source
    import doctest

    return "".join(example.source for example in doctest.DocTestParser().get_examples(block.source))


def free_names(sources: list[str]) -> set[str]:
    """Names the page's blocks read without defining them first: what stand-ins must supply."""
    import symtable

    def read_globals(table, top):
        names = {sym.get_name() for sym in table.get_symbols() if sym.is_referenced()
                 and (not top or not (sym.is_assigned() or sym.is_imported())) and (top or sym.is_global())}
        for child in table.get_children():
            names |= read_globals(child, False)
        return names

    defined, free = set(dir(builtins)), set()
    for source in sources:
        table = symtable.symtable(source, "<block>", "exec")
        own = {sym.get_name() for sym in table.get_symbols() if sym.is_assigned() or sym.is_imported()}
        free |= read_globals(table, True) - defined - own
        defined |= own
    return free


# --------------------------------------------------------------------------- what a block may need
def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


#: Optional things a block may need: a test of the name -> the reason printed when it is absent.
NEEDS = {
    "peft": (lambda: _has_module("peft"), "peft is not installed (pip install -e '.[lora]')"),
    "mlflow": (lambda: _has_module("mlflow"), "mlflow is not installed"),
    "onnx": (lambda: _has_module("onnxruntime") and _has_module("onnxscript"),
             "the onnx extra is not installed (pip install -e '.[onnx]')"),
    "postgres": (lambda: bool(os.environ.get("SKFAIRTUNE_TEST_POSTGRES_URL")),
                 "no PostgreSQL: set SKFAIRTUNE_TEST_POSTGRES_URL (README, command 2, starts one)"),
    "ham10000": (lambda: (HAM10000 / "HAM10000_metadata.csv").is_file(),
                 f"the HAM10000 images are absent ({HAM10000})"),
}


#: Stand-ins that exist only when a need is met: a block using one needs it, marked or not.
STAND_IN_NEEDS = {"url": "postgres", "root": "ham10000"}


def needs_of(block: Block) -> tuple[str, ...]:
    implied = [STAND_IN_NEEDS[name] for name in sorted(free_names([code_of(block)]) & set(STAND_IN_NEEDS))]
    return tuple(dict.fromkeys([*block.needs, *implied]))


def missing_needs(block: Block) -> list[str]:
    unknown = [n for n in block.needs if n not in NEEDS]
    if unknown:
        raise ValueError(f"{block.where}: unknown `needs` {unknown}; known: {sorted(NEEDS)}")
    return [NEEDS[n][1] for n in needs_of(block) if not NEEDS[n][0]()]


# --------------------------------------------------------------------------- stand-ins
TINY_VIT = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)


def _data():
    from sklearn.model_selection import train_test_split

    from skfairtune.datasets import make_biased_images

    # A larger minority with more positives than the default: every outer and inner split of
    # compare_methods holds both classes of both groups.
    data = make_biased_images(200, image_size=16, minority_fraction=0.3, positive_fraction=0.4, random_state=0)
    split = train_test_split(data.images, data.target, data.sensitive_features, test_size=0.3, random_state=0,
                             stratify=data.target.astype(str) + data.sensitive_features["group"].astype(str))
    return data, split


def _classifier(**overrides):
    from skfairtune import FairTuneClassifier

    params = dict(model="vit_tiny_patch16_224", pretrained=False, model_kwargs=dict(TINY_VIT), max_epochs=2,
                  batch_size=32, lr=1e-3, random_state=0)
    return FairTuneClassifier(**{**params, **overrides})


_FITTED = []


def _fitted_search():
    """A copy of one fitted tiny search (fitted once per session: pages may refit their copy)."""
    import copy

    if not _FITTED:
        _FITTED.append(_fit_search())
    return copy.deepcopy(_FITTED[0])


def _fit_search():
    from skfairtune import FairTuneSearchCV

    data, _ = _data()
    search = FairTuneSearchCV(_classifier(), n_trials=6, baselines=("linear", "layernorm"), baseline_lrs=(1e-3,),
                              n_startup_trials=4, random_state=0)
    return search.fit(data.images, data.target, sensitive_features=data.sensitive_features)


def _pipe():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(), _classifier())


def _lesion_ids():
    """Two images per "lesion", both of one label x group cell (as one patient's images are)."""
    import numpy as np

    data, _ = _data()
    cells = data.target.astype(str) + data.sensitive_features["group"].astype(str).to_numpy()
    order = np.argsort(cells, kind="stable")
    ids = np.empty(len(cells), dtype=int)
    ids[order] = np.arange(len(cells)) // 2
    # A pair that straddles two cells (an odd cell size) is split into two lesions.
    straddles = cells[order][0::2][: len(cells) // 2] != cells[order][1::2]
    for k in np.flatnonzero(straddles):
        ids[order[2 * k + 1]] = len(cells) + k
    return ids


def _split(i):
    return lambda: _data()[1][i]


#: Placeholder name -> a factory of its tiny stand-in (called afresh for every page that uses it).
STAND_INS = {
    "X": lambda: _data()[0].images,
    "y": lambda: _data()[0].target,
    "s": lambda: _data()[0].sensitive_features,
    "groups": lambda: _data()[0].sensitive_features,   # the prose's name for the sensitive groups
    "images": lambda: _data()[0].images,
    "target": lambda: _data()[0].target,
    "lesion_ids": lambda: _lesion_ids(),
    "X_train": _split(0), "X_test": _split(1), "y_train": _split(2), "y_test": _split(3),
    "s_train": _split(4), "s_test": _split(5),
    "X_calibration": _split(1), "y_calibration": _split(3), "s_calibration": _split(5),
    "X_new": _split(1), "s_new": _split(5),
    "clf": _classifier,
    "vit": _classifier,
    "pipe": _pipe,
    "cv": lambda: 2,
    "search": _fitted_search,
    "root": lambda: str(HAM10000),
    "url": lambda: os.environ["SKFAIRTUNE_TEST_POSTGRES_URL"],
}


#: What a page's prose says exists before its blocks run (run first, in the page's folder).
PAGE_SETUP = {
    # "Opening a stored study": a search stored in runs/search.log under the name "ham-age".
    "docs/following.md": """
FairTuneSearchCV(clf, n_trials=4, storage="runs/search.log", study_name="ham-age",
                 random_state=0).fit(X, y, sensitive_features=s)
""",
    # "Loading it": the folder that search.save_pretrained("path/to/folder") wrote.
    "docs/howto/deployment.md": """
search.save_pretrained("path/to/folder")
""",
}
