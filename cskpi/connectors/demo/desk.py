"""The synthetic helpdesk behind the ``demo`` connector: its people and its tickets.

``Helpdesk`` makes the directory (agents, a bot, groups, organizations; records) and pages of
tickets with their messages, ratings and requesters: a profile per ticket drawn from a few
thousand per seed, customers (some repeat, most in organizations), assignment and escalation,
and each ticket's life from creation to solve, reopen, close and survey, replayed up to the
data's end. What the data looks like, and why any page can be made on its own, is told in
``connector``'s docstring; when things happen comes from ``arrivals``.

The generator works in integer Unix seconds and makes records, like every connector, once
a ticket's life is known.

Kept apart from ``connector`` so that the connector (settings, streams, cursor semantics) reads
on its own, while this generator, tuned for realism and for speed, changes without touching
it. The order of draws from each block's ``random.Random`` is the data: changing it changes
every value after it for that seed.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from cskpi.connectors import base
from cskpi.connectors.base import Message, Page, Person, Rating, StatusChange, Ticket
from cskpi.connectors.demo.arrivals import DAY, Arrivals, Uniform, answer, later

if TYPE_CHECKING:  # only for annotations: ``demo`` imports this module
    from cskpi.connectors.demo.connector import DemoSettings

LIFETIME = timedelta(days=30)
"""Every event of a ticket (messages, solves, close, ratings) lies within this of its creation."""

_T = TypeVar("_T")
_Event = tuple[int, int, str | None]  # (unix seconds, kind, author id)
_Life = tuple[int, int, int, int, int | None, int | None, int | None, int | None]  # see _walk

_LIFE = int(LIFETIME.total_seconds())
_CLOSE_AFTER = 4 * DAY  # solved tickets close on their own, like Zendesk's default automation
_BLOCK = 1000  # tickets per random stream: fixed, so page_size never changes the data
_PROFILES = 4096
_CUST, _AGENT, _NOTE, _BOT, _SOLVE = range(5)  # event kinds; the first four are messages
_ROLE: tuple[base.AuthorRole, ...] = ("customer", "agent", "agent", "bot")
_SEQ = tuple(str(n) for n in range(32))  # events per ticket: at most 14 + 3 reopens x 3
_BOT_ID = "b1"
# Ticket i is "t{FIRST_TICKET + i}": seven digits, like a helpdesk's sequential ticket ids (a
# Zendesk account's millionth ticket), up to 9M tickets. Ids of one width arrive in the order
# they sort in, so every insert into an id index goes to its right-hand edge.
FIRST_TICKET = 1_000_001


def _table(weights: Mapping[_T, int]) -> tuple[_T, ...]:
    """Expand ``{value: weight}`` so that a uniform index into the result draws by weight."""
    return tuple(value for value, weight in weights.items() for _ in range(weight))


_CHANNELS: tuple[base.Channel, ...] = _table(
    {"email": 34, "web": 25, "chat": 15, "messaging": 9, "phone": 7, "api": 6, "social": 4}
)
_PRIORITIES: tuple[base.Priority | None, ...] = _table(
    {"urgent": 6, "high": 17, "normal": 50, "low": 15, None: 12}
)
_TYPES = _table({"question": 45, "incident": 25, "problem": 10, "task": 10, None: 10})
_TAG_POOL = _table(
    {"billing": 6, "bug": 4, "login": 4, "how_to": 5, "shipping": 3, "refund": 2,
     "feature_request": 3, "outage": 1, "escalated": 2}
)  # fmt: skip
_TAG_COUNT = _table({0: 35, 1: 40, 2: 18, 3: 7})
_SUBJECTS = (
    "Cannot log in", "Question about my invoice", "Refund request", "App crashes on start",
    "How do I export my data?", "Order has not arrived", "Charged twice this month",
    "Password reset mail never comes", "API returns 500", "Feature request: dark mode",
)  # fmt: skip
_REPLY_MEDIAN = {  # first-reply medians in seconds, live channels fastest
    "email": 4 * 3600, "web": 3 * 3600, "api": 5 * 3600, "social": 2 * 3600,
    "messaging": 1800, "chat": 90, "phone": 40,
}  # fmt: skip
_PRIORITY_SPEED = {"urgent": 0.2, "high": 0.5, "normal": 1.0, "low": 1.6, None: 1.2}
_ROUNDS = _table({0: 52, 1: 27, 2: 12, 3: 6, 4: 3})  # exchanges after the first reply
_CSAT_GOOD = _table({1: 3, 2: 3, 3: 7, 4: 25, 5: 62})
_CSAT_BAD = _table({1: 15, 2: 12, 3: 20, 4: 28, 5: 25})
_NPS = _table({0: 3, 2: 2, 4: 3, 5: 4, 6: 6, 7: 12, 8: 18, 9: 25, 10: 27})
_FIRST = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jonas", "Kemi")
_LAST = ("Adler", "Berg", "Costa", "Diaz", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito")
_NAMES = tuple(f"{first} {last}" for last in _LAST for first in _FIRST)
_GROUP_NAMES = ("Support", "Billing", "Technical", "Escalations", "Onboarding", "Enterprise")
_COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell")


def _label(names: Sequence[str], index: int) -> str:
    """Names from a short list, numbered once the list runs out."""
    name = names[index % len(names)]
    return name if index < len(names) else f"{name} {index // len(names) + 1}"


@dataclass(frozen=True, slots=True)
class _Profile:
    """A ticket's static attributes. A few thousand are drawn per seed and shared, so one
    draw per ticket picks a realistic, internally consistent combination."""

    channel: base.Channel
    priority: base.Priority | None
    type: str | None
    tags: tuple[str, ...]
    vip_tags: tuple[str, ...]  # the same ticket's tags when its organization is a VIP
    subject: str
    group: int
    reply_median: float
    p_reopen: float
    p_stuck: float
    p_escalate: float
    bot: bool


def _profile(rnd: random.Random, groups: int) -> _Profile:
    r = rnd.random
    channel = _CHANNELS[int(r() * len(_CHANNELS))]
    priority = _PRIORITIES[int(r() * len(_PRIORITIES))]
    kind = _TYPES[int(r() * len(_TYPES))]
    count = _TAG_COUNT[int(r() * len(_TAG_COUNT))]
    tags = tuple(sorted({_TAG_POOL[int(r() * len(_TAG_POOL))] for _ in range(count)}))
    # Billing questions go to the billing team (group 2) when there is one.
    group = 1 % groups if "billing" in tags else int(r() * groups)
    hard = kind == "problem" or "bug" in tags
    return _Profile(
        channel, priority, kind, tags, (*tags, "vip"),
        _SUBJECTS[int(r() * len(_SUBJECTS))], group,
        _REPLY_MEDIAN[channel] * _PRIORITY_SPEED[priority],
        p_reopen=0.15 if hard else 0.06, p_stuck=0.04 if hard else 0.006,
        p_escalate=0.85 if "escalated" in tags else 0.05, bot=channel in ("chat", "messaging"),
    )  # fmt: skip


class _PageBuilder:
    """A page's records, per type in the order they are made; people by customer number."""

    __slots__ = ("changes", "messages", "people", "ratings", "tickets")

    def __init__(self) -> None:
        self.tickets: list[Ticket] = []
        self.messages: list[Message] = []
        self.ratings: list[Rating] = []
        self.people: dict[int, Person] = {}
        self.changes: list[StatusChange] = []

    def build(self, delivered: int) -> Page:
        records: list[base.Record] = [*self.people.values(), *self.tickets]
        records += self.messages
        records += self.ratings
        records += self.changes
        position = self.tickets[-1].created_at
        return Page(records, cursor=str(delivered), position=position)


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _maybe(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class Helpdesk:
    """The synthetic helpdesk behind both streams: its directory and its tickets."""

    def __init__(self, settings: DemoSettings, end: datetime) -> None:
        self.tickets, self.page_size = settings.tickets, settings.page_size
        self.seed = settings.seed
        self.end = int(end.timestamp())
        self.start = self.end - settings.days * DAY
        self.arrivals = Arrivals(self.start, settings.days, settings.seed)
        agents = settings.agents or max(4, min(60, settings.tickets // 400))
        groups = min(settings.groups or max(2, min(8, agents // 4)), agents)
        self.orgs = settings.organizations or max(3, min(2000, settings.tickets // 50))
        self.customers = max(10, settings.tickets * 11 // 20)
        self.agent_ids = tuple(f"a{j + 1}" for j in range(agents))
        self.group_ids = tuple(f"g{g + 1}" for g in range(groups))
        self.org_ids = tuple(f"o{o + 1}" for o in range(self.orgs))
        self.members = tuple(tuple(range(g, agents, groups)) for g in range(groups))
        # Agents differ in speed (and so in satisfaction), so leaderboards have a spread.
        self.speed = tuple(0.6 + 0.08 * (j * 7 % 11) for j in range(agents))
        rnd = random.Random(f"demo-profiles:{settings.seed}")
        self.profiles = tuple(_profile(rnd, groups) for _ in range(_PROFILES))

    def directory(self) -> list[base.Record]:
        records: list[base.Record] = [
            Person(agent, "agent", _NAMES[j * 7 % len(_NAMES)], f"agent{j + 1}@helpdesk.example")
            for j, agent in enumerate(self.agent_ids)
        ]
        records.append(Person(_BOT_ID, "bot", "Answer Bot"))
        records += (base.Group(g, _label(_GROUP_NAMES, i)) for i, g in enumerate(self.group_ids))
        hour = datetime.fromtimestamp(self.start - self.start % 3600, UTC)  # the data's first
        founded = (hour - timedelta(days=o * 37 % 700 + 1) for o in range(self.orgs))
        records += (
            base.Organization(self.org_ids[o], _label(_COMPANIES, o), at)
            for o, at in enumerate(founded)
        )
        return records

    def first_ticket(self, since: datetime) -> int:
        """Where a backfill from ``since`` starts: the start of the page of the first ticket
        that can be created at or after ``since - LIFETIME`` (no ticket before it can have
        been updated at or after ``since``); ``tickets`` when there is none."""
        threshold, n = int(since.timestamp()) - _LIFE, self.tickets
        # Ticket i is created no later than at((i + 1) / n), which never falls as i rises.
        first = bisect_right(range(n), threshold - 1, key=lambda i: self.arrivals.at((i + 1) / n))
        return first // self.page_size * self.page_size if first < n else n

    def pages(self, start: int) -> Iterator[Page]:
        """Pages of ``page_size`` tickets, from ticket index ``start`` (0-based) on."""
        page, dropped = _PageBuilder(), _PageBuilder()
        for block in range(start // _BLOCK, -(-self.tickets // _BLOCK)):
            r = random.Random(f"demo:{self.seed}:{block}").random
            for i in range(block * _BLOCK, min(self.tickets, (block + 1) * _BLOCK)):
                # Tickets before `start` are drawn and dropped to keep the block's stream aligned.
                self._ticket(r, i, page if i >= start else dropped)
                if len(page.tickets) == self.page_size:
                    yield page.build(i + 1)
                    page = _PageBuilder()
            dropped = _PageBuilder()
        if page.tickets:
            yield page.build(self.tickets)

    def _ticket(self, r: Uniform, i: int, out: _PageBuilder) -> None:
        created = self.arrivals.at((i + r()) / self.tickets)
        p = self.profiles[int(r() * _PROFILES)]
        requester, org = self._customer(r(), out)
        first, agent, group, moves = self._assign(r, p)
        events, solve = self._timeline(r, created, p, requester, first, agent)
        horizon, tid = min(self.end, created + _LIFE), f"t{FIRST_TICKET + i}"
        life = _walk(events, horizon, tid, out.messages)
        seen, updated, replies, reopens, first_reply, first_solved, solved, closed = life
        status = _status(r, events, seen, solved, closed, stuck=solve < 0)
        out.changes += (
            StatusChange(tid, _at(at), changed)
            for at, changed in _history(events, seen, closed, status)
        )
        new = status == "new"  # nobody has touched it yet: unassigned
        assignee = None if new else self.agent_ids[agent]
        # A survey goes out on solving: 30% answer CSAT, 4% NPS.
        if solve >= 0 and (roll := r()) < 0.34:
            slow = reopens > 0 or solve - created > 2 * DAY
            rating = _rate(r, roll, tid, solve, horizon, slow, assignee)
            if rating is not None:
                out.ratings.append(rating)
                # a rating updates its ticket, as in Zendesk
                updated = max(updated, int(rating.rated_at.timestamp()))
        out.tickets.append(Ticket(
            tid, _at(created), _at(updated), status, "hold" if status == "on_hold" else status,
            p.subject, p.priority, p.channel, p.type, p.tags if org % 10 else p.vip_tags,
            requester, self.org_ids[org] if org >= 0 else None, assignee, self.group_ids[group],
            _maybe(first_reply), _maybe(first_solved), _maybe(solved), _maybe(closed), replies,
            reopens,
            0 if new else moves, int(not new and first != agent),
        ))  # fmt: skip

    def _customer(self, u: float, out: _PageBuilder) -> tuple[str, int]:
        """The requester's id and organization (-1: none) for a draw ``u``; a customer new to
        the page joins its people."""
        customer = int(self.customers * u * u)  # squared: low numbers are repeat customers
        mixed = customer * 2654435761 % 4294967296  # Knuth's hash: neighbours land apart
        org = mixed // 100 % self.orgs if mixed % 100 < 65 else -1  # two in three have one
        person = out.people.get(customer)
        if person is None:
            number = str(customer + 1)
            domain = f"org{org + 1}.example" if org >= 0 else "mail.example"
            email = f"customer{number}@{domain}"
            name = _NAMES[customer % len(_NAMES)]
            person = out.people[customer] = Person("u" + number, "customer", name, email)
        return person.external_id, org

    def _assign(self, r: Uniform, p: _Profile) -> tuple[int, int, int, int]:
        """First agent, current agent, current group and the number of group changes."""
        groups, members = len(self.members), self.members[p.group]
        first = members[int(r() * len(members))]
        if groups > 1 and r() < p.p_escalate:
            group = (p.group + 1 + int(r() * (groups - 1))) % groups
            members = self.members[group]
            return first, members[int(r() * len(members))], group, 1
        if r() < 0.1:  # handed to a colleague in the same group
            return first, members[int(r() * len(members))], p.group, 0
        return first, first, p.group, 0

    def _timeline(
        self, r: Uniform, created: int, p: _Profile, requester: str, first: int, agent: int
    ) -> tuple[list[_Event], int]:
        """Every event of a ticket's life in time order, some perhaps past its horizon, and
        its last solve time (-1 if it is never solved)."""
        events: list[_Event] = [(created, _CUST, requester)]
        if p.bot and r() < 0.5:  # the bot's instant answer, before any agent
            events.append((created + 2, _BOT, _BOT_ID))
        median, agent_id = p.reply_median * self.speed[agent], self.agent_ids[agent]
        if r() < 0.03:  # solved with no reply: a duplicate, spam, or the customer found out
            solve = answer(r, events[-1][0], 3600)
        else:
            last = _conversation(r, events, median, requester, self.agent_ids[first], agent_id)
            if r() < p.p_stuck:  # waiting on engineering or a third party, never solved
                return events, -1
            solve = _solve(r, events, last, requester)
        events.append((solve, _SOLVE, None))
        chance = p.p_reopen
        for _ in range(3):  # the customer writes back; the agent answers and solves again
            if r() >= chance:
                break
            t = later(r, solve, DAY)
            solve = answer(r, t, median)
            events += ((t, _CUST, requester), (solve, _AGENT, agent_id), (solve, _SOLVE, None))
            chance *= 0.3
        return events, solve


def _conversation(
    r: Uniform, events: list[_Event], median: float, requester: str, first: str, agent: str
) -> int:
    """The first reply (perhaps after an internal note) and the exchanges after it; returns
    the time of the last agent reply."""
    previous = events[-1][0]
    t = answer(r, previous, median)
    if r() < 0.2:  # a note to a colleague before answering
        events.append((previous + (t - previous) // 2, _NOTE, first))
    events.append((t, _AGENT, first))
    for _ in range(_ROUNDS[int(r() * 100)]):
        t = later(r, t, 4 * 3600)
        events.append((t, _CUST, requester))
        t = answer(r, t, median * 1.5)
        events.append((t, _AGENT, agent))
    return t


def _solve(r: Uniform, events: list[_Event], t: int, requester: str) -> int:
    """When the agent marks the ticket solved after their last reply at ``t``."""
    roll = r()
    if roll < 0.5:
        return t  # submitted as solved together with the reply
    if roll < 0.75:  # the customer says thanks first
        t = later(r, t, 3600)
        events.append((t, _CUST, requester))
        return answer(r, t, 1800)
    return later(r, t, DAY)  # pending until the customer has stayed quiet


def _walk(events: list[_Event], horizon: int, tid: str, messages: list[Message]) -> _Life:
    """Replay the events up to ``horizon`` into messages. Returns how many events
    happened, the ticket's updated time, agent replies and reopens, then its first reply,
    first solve, solve and close times (``None``: not yet; a ticket solved for
    ``_CLOSE_AFTER`` is closed)."""
    prefix, append = "m" + tid[1:] + "-", messages.append
    seen = replies = reopens = at = 0
    first_reply = solved = first_solved = closed = None
    for ts, kind, author in events:
        if ts > horizon:
            break
        seen, at = seen + 1, ts
        if kind == _SOLVE:
            solved = ts
            first_solved = ts if first_solved is None else first_solved
            continue
        append(Message(prefix + _SEQ[seen], tid, _at(ts), _ROLE[kind], kind != _NOTE, author))
        if kind == _AGENT:
            replies += 1
            first_reply = ts if first_reply is None else first_reply
        elif solved is not None and kind == _CUST:  # written after a solve: a reopen
            reopens, solved = reopens + 1, None
    if solved is not None and solved + _CLOSE_AFTER <= horizon:  # closed after a quiet spell
        at = closed = solved + _CLOSE_AFTER
    return seen, at, replies, reopens, first_reply, first_solved, solved, closed


def _history(
    events: list[_Event], seen: int, closed: int | None, status: base.TicketStatus
) -> list[tuple[int, base.TicketStatus]]:
    """Each status change of the first ``seen`` events, ending in ``status``: new on
    arrival, open once an agent touches it or the customer writes back, pending after an
    agent's reply, solved, open again on a reopen, closed after a quiet spell."""
    history: list[tuple[int, base.TicketStatus]] = [(events[0][0], "new")]
    for ts, kind, _ in events[1:seen]:
        now = history[-1][1]
        if kind == _SOLVE:
            changed: base.TicketStatus = "solved"
        elif kind == _AGENT:
            changed = "pending"
        elif kind == _CUST or (kind == _NOTE and now == "new"):
            changed = "new" if now == "new" and kind == _CUST else "open"
        else:
            continue
        if changed != now:
            history.append((ts, changed))
    if closed is not None:
        history.append((closed, "closed"))
    if history[-1][1] != status:  # on hold rather than pending: the same moment, another name
        history[-1] = (history[-1][0], status)
    return history


def _status(
    r: Uniform, events: list[_Event], seen: int, solved: int | None, closed: int | None,
    stuck: bool,
) -> base.TicketStatus:  # fmt: skip
    """The status after the first ``seen`` events, given the solve and close times."""
    if closed is not None:
        return "closed"
    if solved is not None:
        return "solved"
    if seen <= 1 + (events[1][1] == _BOT):  # events after the bot's are all agents' doing
        return "new"
    if events[seen - 1][1] == _AGENT:
        return "on_hold" if r() < (0.5 if stuck else 0.1) else "pending"
    return "open"


def _rate(
    r: Uniform, roll: float, tid: str, solve: int, horizon: int, slow: bool, agent: str | None
) -> Rating | None:
    """The survey answer after the last ``solve``, if given by ``horizon``: NPS when ``roll``
    >= 0.3, else CSAT of the assignee ``agent`` (poorer when ``slow``: reopened or resolved
    after two days)."""
    at = later(r, solve, 3 * 3600)
    if at > horizon:
        return None
    if roll >= 0.3:
        return Rating("r" + tid[1:] + "-nps", "nps", _NPS[int(r() * 100)], 0, 10, _at(at), tid)
    score = (_CSAT_BAD if slow else _CSAT_GOOD)[int(r() * 100)]
    return Rating("r" + tid[1:] + "-csat", "csat", score, 1, 5, _at(at), tid, agent_id=agent)
