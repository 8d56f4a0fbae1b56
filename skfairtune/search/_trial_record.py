"""The search's trial record, under the path it had before the process layer needed it too.

:class:`~skfairtune.distributed._trial_record.TrialRecord` lives in
:mod:`skfairtune.distributed._trial_record` (the process layer writes its
``fail_reason`` and ``requeued_from``); the search's modules and pickles made
before the move import it from here.
"""

from __future__ import annotations

from ..distributed._trial_record import TrialRecord

__all__ = ["TrialRecord"]
