"""The package itself: a light ``import skfairtune``, and Optuna internals in one module only."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import skfairtune

PACKAGE = Path(skfairtune.__file__).parent
REPO = PACKAGE.parent


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout first on the path); its last stdout line as JSON."""
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n{code}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_skfairtune_loads_neither_torch_nor_timm():
    seen = _fresh("import json, skfairtune\n"
                  "print(json.dumps({'file': skfairtune.__file__, 'heavy': sorted(m for m in ('torch', 'timm') "
                  "if m in sys.modules)}))")
    assert Path(seen["file"]).parent == PACKAGE
    assert seen["heavy"] == []


def test_import_skfairtune_loads_no_cluster_engine():
    # The `cluster` extra (dask, distributed, ray, submitit) loads only when a search uses it.
    seen = _fresh("import json, skfairtune\n"
                  "print(json.dumps(sorted(m for m in ('dask', 'distributed', 'ray', 'submitit') "
                  "if m in sys.modules)))")
    assert seen == []


def test_every_public_name_resolves_in_a_fresh_process():
    seen = _fresh("import json, skfairtune\n"
                  "names = {n: type(getattr(skfairtune, n)).__name__ for n in skfairtune.__all__}\n"
                  "print(json.dumps({'names': names, 'dir': dir(skfairtune)}))")
    assert set(seen["names"]) == set(skfairtune.__all__)
    assert seen["names"]["FairTuneSearchCV"] == "type" and seen["names"]["__version__"] == "str"
    assert set(skfairtune.__all__) <= set(seen["dir"])


@pytest.mark.parametrize("name", sorted(skfairtune.__all__))
def test_public_names_are_the_submodules_objects(name):
    value = getattr(skfairtune, name)
    if name != "__version__":
        module = sys.modules[f"skfairtune.{skfairtune._LAZY[name]}"]
        assert getattr(module, name) is value


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'skfairtune' has no attribute 'FairTuneSearch'"):
        skfairtune.FairTuneSearch  # noqa: B018


def test_submodules_are_attributes_as_before():
    assert skfairtune.datasets.make_biased_images is not None
    assert "datasets" in dir(skfairtune)


# What an Optuna internal looks like in source: a private attribute of a study, a trial or a
# storage (an object's own ``self._lock`` is not one), a name from one of Optuna's private
# modules, or its error text.
_INTERNAL = re.compile(r"(?<!self)\.(_storage|_trial_id|_backend|_lock)\b|_lazy_random_state|"
                       r"optuna(\.\w+)*\._\w+|\"Study\.stop\"|Heartbeat of storage|_CachedStorage")


def test_optuna_internals_are_used_in_the_compat_module_only():
    offenders = []
    compat = PACKAGE / "distributed" / "_optuna_compat.py"
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == compat:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _INTERNAL.search(line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert offenders == []
    assert _INTERNAL.search(compat.read_text())  # the pattern does see them
