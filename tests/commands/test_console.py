"""Vendor text on the console: printed as it is, never read as rich markup (issue 22, slip 11)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from rich.console import Console

from cskpi.commands import console
from cskpi.core.app import CheckResult
from cskpi.core.sync import StreamResult, SyncReport

# What HttpClient makes of a Zendesk 400: its status line, then the body the API sent.
# Zendesk names cursor parameters page[size] and page[after]
# (https://developer.zendesk.com/api-reference/introduction/pagination/).
ZENDESK_400 = (
    "acme: 400 Bad Request on GET https://acme.zendesk.com/api/v2/groups.json?page[size]=100: "
    '{"error":"InvalidPaginationParameter","description":"page[size] must be between 1 and 100"}'
)
CLOSING_TAG = "acme: 500 on GET /x: <p>[/b] unexpected [/link]</p>"


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    written = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=written, width=400, color_system=None))
    return written


@pytest.mark.parametrize("error", [ZENDESK_400, CLOSING_TAG])
def test_a_failed_stream_prints_the_vendor_error_as_it_is(screen: io.StringIO, error: str) -> None:
    console.sync_report(SyncReport([StreamResult("acme", "groups", error=error)]))

    assert f"✗ acme/groups: {error}" in screen.getvalue()


def test_a_check_detail_is_text_in_its_table() -> None:
    written = io.StringIO()
    table = console.check_table([CheckResult("acme[eu]", False, ZENDESK_400)])
    Console(file=written, width=400, color_system=None).print(table)

    assert "page[size] must be between" in written.getvalue()
    assert "acme[eu]" in written.getvalue()


@pytest.fixture
def restore_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("cskpi", "apscheduler"):
        logger = logging.getLogger(name)
        for attr in ("handlers", "propagate", "level"):
            monkeypatch.setattr(logger, attr, getattr(logger, attr))


@pytest.mark.usefixtures("restore_loggers")
def test_apscheduler_warnings_go_through_the_redacting_json_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console.setup_logging(json_lines=True)
    echoed = "Authorization: Basic dXNlcjpzM2NyZXQ="  # user:s3cret, as a proxy echoed it
    try:
        raise RuntimeError(f"proxy said {echoed}")
    except RuntimeError:  # what APScheduler's executor logs when a job raises
        logging.getLogger("apscheduler.executors.default").exception(
            'Job "%s" raised an exception (%s)', "sync:zd", echoed
        )
    logging.getLogger("apscheduler.scheduler").info("Added job")  # its chatter stays out
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    assert lines[0]["logger"] == "apscheduler.executors.default"
    assert lines[0]["message"] == 'Job "sync:zd" raised an exception (Authorization: Basic ***)'
    assert "dXNlcjpzM2NyZXQ" not in json.dumps(lines)
    assert "RuntimeError: proxy said Authorization: Basic ***" in lines[0]["exception"]
