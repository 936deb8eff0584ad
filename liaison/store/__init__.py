"""What the server keeps on disk: the journal, run history, recovery of interrupted runs, the data-folder lock.

The engine (``session/``) knows nothing of this: it writes PsychoPy's own files
and each run's folder; the server journals every event and command it relays.
"""

from .datalock import DataDirBusy, DataDirLock
from .journal import JOURNAL_FILE, Journal
from .recovery import RecoveryReport, rebuild_run, recover
from .runs import RunHistory

__all__ = ["JOURNAL_FILE", "DataDirBusy", "DataDirLock", "Journal", "RecoveryReport", "RunHistory",
           "rebuild_run", "recover"]
