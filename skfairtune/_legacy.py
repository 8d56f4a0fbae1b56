"""Old module paths of the flat layout, kept importable for pickles made by earlier releases.

A pickle stores each class by module path. Before the subpackages (release
0.1.0 as of December 2026) the package was flat, so saved classifiers and
searches name ``skfairtune._mask_space``, ``skfairtune._prefix`` and so on.
:func:`install` adds a finder that imports such a path as the module the code
lives in now, on first use only: ``import skfairtune`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["LEGACY_MODULES", "install"]

#: Flat-layout module -> its module in the subpackage layout.
LEGACY_MODULES = {
    "_baselines": "search._baselines", "_bunch": "datasets._bunch", "_checks": "_utils._checks",
    "_cluster": "distributed._cluster", "_credentials": "distributed._credentials", "_degrade": "distributed._degrade",
    "_dicom": "_images._dicom", "_filecache": "_images._filecache", "_follow": "distributed._follow",
    "_group_inputs": "metrics._group_inputs", "_ham10000": "datasets._ham10000", "_image_csv": "datasets._image_csv",
    "_imageio": "_images._decode", "_inputs": "_images._convert", "_journal": "distributed._journal",
    "_liveness": "distributed._liveness", "_lora": "masks._lora", "_mask_layout": "masks._layout",
    "_mask_space": "masks._space", "_multiobjective": "search._multiobjective", "_objective": "search._objective",
    "_optuna_compat": "distributed._optuna_compat", "_parallel": "distributed._run", "_params": "_utils._params",
    "_pareto": "search._pareto", "_pareto_plots": "plotting._pareto", "_pareto_pruning": "search._pruners",
    "_pixels": "_images._pixels", "_predictions": "search._predictions", "_preemption": "distributed._preemption",
    "_prefix": "backbone._vit_split", "_preprocess": "_images._geometry", "_presets": "masks._presets",
    "_rank_auc": "metrics._rank_auc", "_reconnect": "distributed._reconnect", "_results": "search._results",
    "_search_setup": "search._setup", "_selection": "search._selection", "_signature": "search._signature",
    "_splits": "search._splits", "_study": "distributed._study", "_synthetic": "datasets._synthetic",
    "_template": "_training._template", "_trainer": "_training._trainer", "_trial_budget": "distributed._budget",
    "_trial_loop": "distributed._loop", "_trial_record": "distributed._trial_record", "_worker_pool": "distributed._pool",
    "_worker_process": "distributed._child",
    # "_training" is now the package of the same name; it re-exports MaskedViTNet for old pickles.
}


class _LegacyFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``skfairtune.<old>`` as the module that now holds its code (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package == __package__ and name in LEGACY_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__package__}.{LEGACY_MODULES[spec.name.rpartition('.')[2]]}")

    def exec_module(self, module):
        pass  # the real module ran when it was imported


def install() -> None:
    """Add the finder once; it comes last, so it never shadows a real module."""
    if not any(isinstance(finder, _LegacyFinder) for finder in sys.meta_path):
        sys.meta_path.append(_LegacyFinder())
