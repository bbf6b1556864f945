"""Connector types, found through the ``cskpi.connectors`` entry-point group.

The built-in connectors are registered in cskpi's own pyproject.toml exactly as a
third-party package (say ``cskpi-helpscout``) registers its own:

    [project.entry-points."cskpi.connectors"]
    helpscout = "cskpi_helpscout:HelpScoutConnector"
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from cskpi.connectors.base import ConnectorFactory

GROUP = "cskpi.connectors"
log = logging.getLogger("cskpi.connectors")


class UnknownConnectorTypeError(LookupError):
    pass


def installed() -> dict[str, ConnectorFactory]:
    """Every installed connector type by name, built-ins and plugins alike."""
    found: dict[str, ConnectorFactory] = {}
    for ep in entry_points(group=GROUP):
        # A broken plugin is reported and left out: it must not take the built-ins down.
        try:
            factory = ep.load()
        except Exception as exc:
            log.warning("connector plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        declared = getattr(factory, "type", None)
        if declared != ep.name:
            log.warning(
                "connector plugin %r (%s) declares type %r; it must equal its entry-point name",
                ep.name,
                ep.value,
                declared,
            )
            continue
        found[ep.name] = factory
    return dict(sorted(found.items()))


def get(name: str, types: dict[str, ConnectorFactory] | None = None) -> ConnectorFactory:
    types = installed() if types is None else types
    try:
        return types[name]
    except KeyError:
        raise UnknownConnectorTypeError(
            f"unknown connector type {name!r}; installed: {', '.join(types) or 'none'}"
        ) from None
