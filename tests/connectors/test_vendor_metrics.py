"""Each vendor's own durations (SPEC §7 ``vendor_metric``) from the payloads the connectors
already fetch: the documented examples in tests/samples, mapped by hand here."""

from __future__ import annotations

import json
from typing import Any

from cskpi.connectors import freshdesk_map, intercom_map, zendesk_map
from cskpi.connectors.base import Page, VendorMetrics
from cskpi.core.records import screen
from tests.sample_data import SAMPLES


def sample(vendor: str, name: str) -> Any:
    path = SAMPLES / vendor / name
    return json.loads(path.read_text())


def test_zendesk_metric_set_gives_calendar_and_business_seconds() -> None:
    """The docs' Ticket Metric example: every {calendar, business} pair in minutes x 60."""
    metric_set = sample("zendesk", "ticket_metric_docs_example.json")
    raw = {"id": 4343, "metric_set": metric_set}
    found = zendesk_map.vendor_metrics(raw)
    assert found == VendorMetrics("4343", [
        ("reply_time", 2391 * 60), ("reply_time_business", 737 * 60),
        ("first_resolution_time", 2391 * 60), ("first_resolution_time_business", 737 * 60),
        ("full_resolution_time", 2391 * 60), ("full_resolution_time_business", 737 * 60),
        ("agent_wait_time", 2391 * 60), ("agent_wait_time_business", 737 * 60),
        ("requester_wait_time", 2391 * 60), ("requester_wait_time_business", 737 * 60),
        ("on_hold_time", 2290 * 60), ("on_hold_time_business", 637 * 60),
    ])  # fmt: skip


def test_zendesk_nulls_and_unreplied_tickets_leave_metrics_out() -> None:
    """Null until both events happened; a reply time of 0 with no reply is no reply."""
    metric_set = {
        "replies": 0, "reply_time_in_minutes": {"calendar": 0, "business": 0},
        "full_resolution_time_in_minutes": {"calendar": None, "business": None},
        "on_hold_time_in_minutes": {"calendar": 5, "business": "x"},
    }  # fmt: skip
    found = zendesk_map.vendor_metrics({"id": 7}, metric_set)
    assert found == VendorMetrics("7", [("on_hold_time", 300)])
    assert zendesk_map.vendor_metrics({"id": 7, "status": "deleted"}) is None


def test_intercom_statistics_are_seconds_as_given() -> None:
    """2.16's schema example (handling_time from 2.13 on) and Airbyte's record of a
    conversation still open (nulls left out)."""
    stats = sample("intercom", "conversation_statistics_schema_examples_oas_2.16.json")
    assert intercom_map.vendor_metrics("5", stats) == VendorMetrics("5", [
        ("reply_time", 2310), ("first_resolution_time", 2310), ("full_resolution_time", 2310),
        ("handling_time", 2310), ("assignment_time", 2310),
    ])  # fmt: skip
    record = sample("intercom", "conversation_with_statistics_airbyte_record.json")
    assert intercom_map.vendor_metrics("1", record["statistics"]) == VendorMetrics(
        "1", [("reply_time", 4317957)]
    )
    assert intercom_map.vendor_metrics("1", {}) is None


def test_freshdesk_stats_stamps_are_durations_from_creation() -> None:
    raw = sample("freshdesk", "ticket_with_stats_python_freshdesk_fixture.json")
    ticket = freshdesk_map.map_ticket(raw, {})
    found = freshdesk_map.vendor_metrics(ticket, raw["stats"])
    # created 2016-05-18T04:36:04Z; four years to 2020-05-18 (with 2020-02-29) are 1461
    # days; first response 2020-06-17T20:23:43Z is 30 d 15:47:39 later, resolved
    # 2020-07-24T15:35:21Z 67 d 10:59:17 later; not closed
    four_years = 1461 * 86400
    assert found == VendorMetrics(str(raw["id"]), [
        ("reply_time", four_years + 30 * 86400 + 15 * 3600 + 47 * 60 + 39),
        ("full_resolution_time", four_years + 67 * 86400 + 10 * 3600 + 59 * 60 + 17),
    ])  # fmt: skip


def test_a_broken_metric_is_screened_out_with_the_field_named() -> None:
    bad = VendorMetrics("1", [("reply_time", -5)])
    twice = VendorMetrics("2", [("reply_time", 5), ("reply_time", 6)])
    kept, skipped = screen(Page([bad, twice, VendorMetrics("3", [("reply_time", 60)])]))
    assert kept == [VendorMetrics("3", [("reply_time", 60)])]
    assert [(s.record_id, s.reason) for s in skipped] == [
        ("1 (vendor metrics)", "metrics: reply_time = -5 is not whole seconds"),
        ("2 (vendor metrics)", "metrics: reply_time given twice"),
    ]
