"""Running trials in processes and on machines sharing one Optuna study.

The public names are the tools a long or shared search needs by hand: open a
study's storage as the search does, count the trials that the budget counts,
redact a database URL, save a model so that a crash never leaves half a file.
Everything else here is the machinery of ``FairTuneSearchCV(n_jobs=...)`` and
``skfairtune worker``.
"""

from ._budget import counted_trials
from ._credentials import redact_url
from ._degrade import save_atomically
from ._study import make_storage

__all__ = ["counted_trials", "make_storage", "redact_url", "save_atomically"]
