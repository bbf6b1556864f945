import logging
from importlib.metadata import EntryPoint

import pytest

from cskpi.connectors import registry
from cskpi.connectors.demo.connector import DemoConnector


def test_the_built_in_demo_comes_through_the_entry_point_group() -> None:
    # needs the package installed (pip install -e .), as CI does: the same door plugins use
    assert registry.installed()["demo"] is DemoConnector


def test_unknown_type_lists_the_installed_ones() -> None:
    with pytest.raises(registry.UnknownConnectorTypeError, match="installed: demo"):
        registry.get("zendsk", {"demo": DemoConnector})


def test_a_broken_or_misnamed_plugin_is_reported_and_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    eps = [
        EntryPoint("demo", "cskpi.connectors.demo.connector:DemoConnector", registry.GROUP),
        EntryPoint("broken", "cskpi_nonexistent_plugin:Connector", registry.GROUP),
        EntryPoint("helpdesk", "cskpi.connectors.demo.connector:DemoConnector", registry.GROUP),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    caplog.set_level(logging.WARNING, logger="cskpi")
    assert list(registry.installed()) == ["demo"]
    assert "'broken'" in caplog.text
    assert "failed to load" in caplog.text
    assert "declares type 'demo'; it must equal its entry-point name" in caplog.text
