"""Every benchmark, one file each; importing this package registers them all.

Each public module (a name without a leading underscore) is imported, so a new benchmark is one new
file: its ``@register`` adds it to the registry, the config tree and the docs table.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
