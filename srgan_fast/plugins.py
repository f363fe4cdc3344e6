"""Plugins: modules that register backends (runners.register_backend) or model families
(families.register_family) from outside this package, loaded by the `srgan-fast` command.

Two ways to name one, both read at the start of every command:
  * an entry point in the group "srgan_fast.plugins" of an installed distribution, e.g. in its
    pyproject.toml:  [project.entry-points."srgan_fast.plugins"]  my_backend = "my_package.backend"
  * SRGAN_FAST_PLUGINS=module[,module...] in the environment (no packaging needed; the module
    must be importable, e.g. on PYTHONPATH).
Importing the module is all the loading there is: its register_* calls run at import. A plugin
that fails to import ends the command with one line naming it.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from .errors import UserError

__all__ = ["ENTRY_POINT_GROUP", "load_plugins", "PluginError"]

ENTRY_POINT_GROUP = "srgan_fast.plugins"
_loaded: set[str] = set()


class PluginError(UserError, ImportError):
    """A plugin named by an entry point or SRGAN_FAST_PLUGINS could not be imported."""


def load_plugins() -> list[str]:
    """Import every plugin not imported yet; returns the names of those imported now."""
    found = [(ep.name, ep.value, ep.load) for ep in entry_points(group=ENTRY_POINT_GROUP)]
    found += [(m, m, lambda m=m: importlib.import_module(m))
              for m in os.environ.get("SRGAN_FAST_PLUGINS", "").replace(" ", "").split(",") if m]  # fmt: skip
    done = []
    for name, target, load in found:
        if target in _loaded:
            continue
        try:
            load()
        except Exception as e:  # any failure of a third party's import is theirs: one line, named
            raise PluginError(f"plugin {name!r} ({target}) failed to load: {type(e).__name__}: {e}") from None
        _loaded.add(target)
        done.append(name)
    return done
