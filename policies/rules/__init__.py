"""Every rule of the pack, in the order the README's table lists them."""
from __future__ import annotations

from . import (
               availability,
               compute,
               fit,
               keys,
               kubernetes,
               logs,
               managed,
               models,
               monitoring,
               network,
               runtime,
               secrets,
               storage,
               tls,
               waf,
)

ALL = [
    *network.RULES, *compute.RULES, *tls.RULES, *runtime.RULES, *managed.RULES, *waf.RULES, *logs.RULES, *secrets.RULES,
    *keys.RULES, *storage.RULES, *models.RULES, *fit.RULES, *monitoring.RULES, *kubernetes.RULES,
    *availability.RULES,
]
BY_NAME = {r.name: r for r in ALL}
assert len(BY_NAME) == len(ALL), "rule names must be unique"
