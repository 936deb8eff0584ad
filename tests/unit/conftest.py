"""The unit tier: no window, no socket, seconds in all (see tests/conftest.py for the tiers).

Hypothesis profiles: ``unit`` (the default) gives the property tests a
third of the examples ``thorough`` does; ``scripts/test`` (so CI) runs the
fast tier with ``unit``, then the property tests again with
``HYPOTHESIS_PROFILE=thorough``, so the full search still runs on every
change while the fast tier's feedback stays fast.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from hypothesis import HealthCheck, settings

UNIT = Path(__file__).resolve().parent

# Both profiles: no deadline (a loaded CI machine must not fail a correct parser), and generating
# recursive JSON is slow by design, not a sign of a bad strategy.
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("unit", max_examples=100, **_COMMON)
settings.register_profile("thorough", max_examples=300, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "unit"))


def pytest_collection_finish(session):
    """Freeze what collection built (modules, models, schemas) out of the garbage collector's sight.

    Every full collection would otherwise walk those objects again, and the
    property tests allocate enough to trigger many: this halves the time the
    unit tier spends collecting garbage. Only for a unit-only run, so an
    end-to-end test never sees a frozen heap it did not make.
    """
    if session.items and all(UNIT in Path(str(item.path)).parents for item in session.items):
        gc.collect()
        gc.freeze()
