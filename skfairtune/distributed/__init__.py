"""Running trials in processes and on machines sharing one Optuna study.

The public names are the tools a long or shared search needs by hand: open a
study's storage as the search does, count the trials that the budget counts,
redact a database URL, save a model so that a crash never leaves half a file,
and launch SLURM array tasks that run one search (``submit_search_workers``).
Everything else here is the machinery of ``FairTuneSearchCV(n_jobs=...)``
(on the local pool, or on the engine ``joblib.parallel_config`` names) and
``skfairtune worker``.
"""

from ._budget import counted_trials
from ._credentials import redact_url
from ._degrade import save_atomically
from ._engines import EngineUnavailableError
from ._slurm import SearchTask, submit_search_workers
from ._study import make_storage

__all__ = ["EngineUnavailableError", "SearchTask", "counted_trials", "make_storage", "redact_url",
           "save_atomically", "submit_search_workers"]
