"""One sentence per KPI, for people: the report's definitions appendix. The full rules, with
every choice SPEC leaves open, are in docs/kpis.md; these sentences summarise them. The keys
of SPEC §6 and §7 are here too, so a KPI added to the engine shows its definition at once
(tests/core/kpis/test_definitions.py checks every key the engine gives has one)."""

from __future__ import annotations

W = "in the window"

DEFINITIONS: dict[str, str] = {
    # SPEC §4
    "tickets_created": f"Tickets created {W}.",
    "tickets_solved": f"Tickets solved {W} (solved_at {W}, status solved or closed).",
    "backlog": "Tickets open (new, open, pending or on hold) at the window's end, or at the "
    "evaluation instant if that comes first.",
    "backlog_change": f"Tickets created minus tickets solved {W}.",
    "backlog_age": "The backlog split by age at the window's end: <1d, 1-3d, 3-7d, >7d.",
    "first_response_time": f"Over tickets created {W} with a first reply: first reply minus "
    "creation; median (the headline), p90, mean.",
    "first_response_time_business": "First response time counted in business hours only.",
    "response_time": "Over each public customer message followed by a public agent message, "
    "the time to that agent message; median, p90, mean.",
    "resolution_time": f"Over tickets solved {W}: solved minus created; median, p90, mean.",
    "resolution_time_business": "Resolution time counted in business hours only.",
    "fcr_rate": f"Of tickets solved {W} with at least one agent reply: the share solved with "
    "exactly one reply and never reopened.",
    "reopen_rate": f"Of tickets solved {W}: the share reopened at least once.",
    "escalation_rate": f"Of tickets solved {W}: the share that changed group or carry an "
    "escalation tag.",
    "sla_first_response": f"Of tickets created {W} that have a priority target: the share "
    "whose first reply came within it; one still unanswered past its target is a breach.",
    "sla_resolution": f"Of tickets created {W} that have a priority target: the share solved "
    "within it; one still unsolved past its target is a breach.",
    "csat": f"CSAT ratings {W}: the share in the top two boxes of their scale.",
    "nps": f"NPS ratings (0-10) {W}: % promoters (9-10) minus % detractors (0-6).",
    "ces": f"CES ratings {W}: the mean on their scale, and the share in the top two boxes.",
    "agent_replies_per_solved": f"Agent replies per ticket solved {W}.",
    "submissions_by_hour": f"Tickets created {W} by weekday and hour, in the report's time zone.",
    "cost_per_ticket": f"Support cost of the window (monthly cost prorated by day) per ticket "
    f"solved {W}.",
    "cost_revenue_ratio": "Support cost as a share of revenue over the same span.",
    "churn_rate": f"Organizations with MRR active at the window's start that churned {W}.",
    # SPEC §6
    "first_resolution_time": f"Over tickets solved {W}: first solve minus creation.",
    "first_resolution_time_business": "First resolution time counted in business hours only.",
    "resolution_stages": f"Over tickets solved {W}: time to first reply, from first reply to "
    "first solve, and after a reopen to the final solve.",
    "time_in_status": f"Over tickets solved {W}: the time each spent new, open, pending and "
    "on hold.",
    "reassignment_rate": f"Of tickets solved {W}: the share that changed assignee.",
    "touches": f"Tickets solved {W} by agent replies: 0, 1, 2, 3+.",
    "first_response_distribution": f"Tickets created {W} by time to first reply, and those "
    "still unanswered.",
    "resolution_distribution": f"Tickets solved {W} by time from creation to solve.",
    "esat": f"Employee satisfaction ratings {W}: mean and top-two-box share.",
    "public_replies": f"Public agent messages {W}.",
    "internal_notes": f"Internal agent notes {W}.",
    "tickets_touched": f"Distinct tickets with an agent message {W}.",
    "active_agents": f"Distinct agents with a public message {W}.",
    "awaiting_reply": "The backlog split by who is awaited (agent or customer) and for how long.",
    "unique_customers": f"Distinct requesters of tickets created {W}.",
    "repeat_contact_rate": f"Of tickets solved {W}: the share whose requester wrote again "
    "within the repeat window.",
    "backlog_time_to_clear": "Days to clear the backlog at the last 14 days' net solving rate.",
    # SPEC §7
    "handle_time": f"The vendor's handling time over tickets solved {W}.",
    "csat_response_rate": f"CSAT surveys answered {W} per survey offered {W}.",
}


def definition(key: str) -> str:
    """The sentence for ``key``; a KPI without one says so rather than failing a report."""
    return DEFINITIONS.get(key, "No definition recorded; see docs/kpis.md.")
