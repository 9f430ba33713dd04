"""The demo's 90 days of history, made by the real services with `now` set back in time.

Day by day, as the platform and the scheduled jobs would have made it: calls and events are
reported through the usage API's services (usage.ingest), rated and charged; customers top up
when their credit runs low; threshold invoices are cut and charged; periods close into invoices
and statements; alerts are recorded. So every page of the dashboard shows figures that agree
with the ledger. The random choices are seeded: every build is the same.
"""

import random
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction

from accounts.demo.data import (
    CUSTOMER_EMAIL,
    DEMO_ACCOUNTS,
    OTHER_EMAIL,
    USD,
    VIEWER_EMAIL,
    DemoAccount,
    demo_user,
)
from accounts.keys import issue_api_key, revoke_api_key
from accounts.models import Account, KeyKind, Membership, RateTier, Role, User
from accounts.team import invite_member
from accounts.tier_requests import request_higher_tier
from billing.invoicing.invoices import invoice_thresholds
from billing.invoicing.period_close import close_periods
from billing.ledger.expiry import expire_credit
from billing.models import Plan, TestCardBehaviour
from billing.payments import auto_topup, cards, simulated, topups
from billing.payments.collection import collect_due_invoices, collect_invoice
from billing.periods import period_containing
from billing.plans.onboarding import create_account
from billing.staff import approve_allowance
from usage.api.ratelimit import hit
from usage.ingest.calls import refund_call, report_call
from usage.ingest.events import MAX_BATCH, ingest_events
from usage.models import Call
from usage.reports import CallReport, EventReport
from usage.spending import budgets

HISTORY_DAYS = 90
RECENT_DAYS = 14  # reported day by day; older history a week at a time

LLMS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-flash"]
CHAT_MODELS = [
    ("openai", "gpt-4o-mini", 5),
    ("openai", "gpt-4o", 2),
    ("meta", "llama-3.3-70b", 2),
    ("mistral", "mistral-small", 1),
]
FLEX_MODELS = [("openai", "gpt-4o"), ("meta", "llama-3.3-70b"), ("anthropic", "claude-sonnet-4")]


class History:
    """The demo accounts' history from `days` (HISTORY_DAYS) ago to `now`; `build()` makes it."""

    def __init__(self, *, now: datetime, staff: User, customer: User, days: int = HISTORY_DAYS):
        self.now = now
        self.days = days
        self.staff = staff
        self.customer = customer
        self.random = random.Random(20261122)
        self.start = datetime.combine((now - timedelta(days=days)).date(), time(0), tzinfo=UTC)
        self._sequence = 0

    def _id(self, prefix: str) -> str:
        self._sequence += 1
        return f"demo-{prefix}-{self._sequence:06d}"

    # Accounts, keys, team ---------------------------------------------------------------------

    def open_accounts(self) -> None:
        plans = {p.code: p for p in Plan.objects.all()}
        owners = {
            CUSTOMER_EMAIL: self.customer,
            OTHER_EMAIL: demo_user(OTHER_EMAIL, name="Globex Owner"),
        }
        opened = {}
        for spec in DEMO_ACCOUNTS:
            parent = opened.get(spec.parent)
            with transaction.atomic():
                spec.account = create_account(
                    name=spec.name,
                    email=spec.owner_email,
                    plan=plans[spec.plan],
                    now=self.start,
                    owner=None if parent else owners[spec.owner_email],
                    parent=parent,
                    anchor_day=spec.anchor_day,
                    credit_micros=spec.credit_micros,
                    actor=self.staff,
                    # As when the customer opens it: its included allowance waits for staff.
                    allowance_locked=parent is not None,
                )
                if parent is not None:
                    approve_allowance(
                        account=spec.account,
                        reason="Demo: the parent's contract covers this subaccount.",
                        actor=self.staff,
                        key=f"demo:{spec.account.public_id}",
                        now=self.start,
                    )
            opened[spec.name] = spec.account
            if spec.card:
                cards.add_test_card(
                    account=spec.account, behaviour=TestCardBehaviour.SUCCEED, now=self.start
                )
            tier = plans[spec.plan].default_rate_tier
            for name in ("Production", "Staging"):
                issue_api_key(
                    kind=KeyKind.CUSTOMER,
                    name=name,
                    now=self.start,
                    account=spec.account,
                    tier=tier,
                    created_by=owners[spec.owner_email],
                )

    def finish_accounts(self) -> None:
        """What the customers did lately: keys, team, budgets, auto-top-up, a refund."""
        acme = DEMO_ACCOUNTS[0].account
        llm = DEMO_ACCOUNTS[4].account
        viewer = demo_user(VIEWER_EMAIL, name="Demo Viewer")
        Membership.objects.get_or_create(
            user=viewer, account=acme, defaults={"role": Role.VIEWER, "created_at": self.now}
        )
        invite_member(
            account=acme,
            email="finance@acme.test",
            role=Role.BILLING,
            invited_by=self.customer,
            actor_role=Role.OWNER,
            now=self.now - timedelta(days=2),
        )
        old = issue_api_key(
            kind=KeyKind.CUSTOMER,
            name="Old laptop",
            now=self.start,
            account=acme,
            created_by=self.customer,
        )
        revoke_api_key(api_key=old.api_key, now=self.now - timedelta(days=30))
        production = llm.api_keys.get(name="Production")
        for _ in range(14):  # a burst over the free tier's 10 a minute: 4 refused with 429
            hit(api_key=production, now=self.now - timedelta(hours=3))
        request_higher_tier(
            account=llm,
            key_id=production.key_id,
            tier=RateTier.ELEVATED,
            reason="Launching our assistant to all customers next week.",
            requested_by=self.customer,
            now=self.now - timedelta(hours=2),
        )
        budgets.create_budget(
            account=llm, name="Monthly", amount_micros=40 * USD, hard=False, now=self.now
        )
        budgets.create_budget(
            account=llm,
            name="Staging key",
            amount_micros=5 * USD,
            hard=True,
            api_key=llm.api_keys.get(name="Staging"),
            now=self.now,
        )
        auto_topup.save_auto_topup_settings(
            account=acme,
            enabled=True,
            threshold_micros=20 * USD,
            amount_micros=50 * USD,
            now=self.now,
        )
        charged = Call.objects.filter(account=acme, charged_micros__gt=0).order_by("-created_at")
        for call_id in charged.values_list("call_id", flat=True)[3:40:12]:
            refund_call(call_id=call_id, now=self.now, reason="Line dropped on our side")
        # A checkout left open two hours ago (Billing offers Resume and Cancel) and one abandoned
        # last week, which the expiry job cancels.
        for hours_ago in (2, 24 * 6):
            topups.start_topup(
                account=acme,
                amount_micros=25 * USD,
                now=self.now - timedelta(hours=hours_ago),
                actor=self.customer,
                success_url="/",
                cancel_url="/",
            )
        topups.expire_abandoned_topups(now=self.now)

    # A day of usage ---------------------------------------------------------------------------

    def _weight(self, day_index: int, moment: datetime) -> float:
        """Busier on weekdays, and growing: the last month is about 40% above the first."""
        weekday = 1.0 if moment.weekday() < 5 else 0.45
        return weekday * (0.8 + 0.55 * day_index / self.days)

    def _moments(self, day: datetime, count: int) -> list[datetime]:
        """`count` moments in business hours of `day` (UTC), none after now."""
        moments = sorted(
            day + timedelta(seconds=self.random.randint(7 * 3600, 21 * 3600)) for _ in range(count)
        )
        return [m for m in moments if m <= self.now]

    def _count(self, per_day: float, weight: float) -> int:
        expected = per_day * weight
        return max(int(self.random.gauss(expected, expected * 0.25) + 0.5), 0)

    def call_reports(self, spec: DemoAccount, day: datetime, weight: float) -> list[CallReport]:
        payg = spec.plan in ("voice-payg", "voice-enterprise")
        reports = []
        for moment in self._moments(day, self._count(spec.calls_per_day, weight)):
            roll = self.random.random()
            seconds = self.random.randint(*spec.call_seconds)
            ms = self.random.randint(0, 999)
            connected = moment - timedelta(seconds=seconds, milliseconds=ms)
            fields = {"status": "completed", "ended_at": moment}
            if roll < 0.06:
                fields["status"] = "no_answer"
            elif roll < 0.08:
                fields["status"] = "hangup_on_voicemail"
            elif roll < 0.11:
                fields["status"] = "failed"
            elif roll < 0.17:
                fields["status"] = "transferred"
                fields["transferred_at"] = connected + timedelta(seconds=seconds * 2 // 3)
            if payg:
                fields["llm"] = self.random.choice(LLMS)
                if self.random.random() < 0.12:
                    fields["destination"] = self.random.choice(["+442071234567", "+4930123456"])
            if spec.plan == "credits-monthly" and self.random.random() < 0.2:
                fields["direction"] = "outbound"
            if self.random.random() < 0.15 and fields["status"] == "completed":
                fields["hold_seconds"] = Decimal(self.random.randint(5, 60))
            reports.append(
                CallReport(
                    call_id=self._id("call"),
                    account=spec.account.public_id,
                    connected_at=connected,
                    **fields,
                )
            )
        return reports

    def event_reports(self, spec: DemoAccount, day: datetime, weight: float) -> list[EventReport]:
        account = spec.account
        reports: list[EventReport] = []
        for moment in self._moments(day, self._count(spec.chat_per_day, weight) // 5):
            reports.append(
                EventReport(
                    id=self._id("chat"),
                    account=account.public_id,
                    type="chat",
                    occurred_at=moment,
                    messages=self.random.randint(2, 12),
                )
            )
        models = [m for m in CHAT_MODELS for _ in range(m[2])]
        for moment in self._moments(day, self._count(spec.llm_per_day, weight)):
            provider, model, _ = self.random.choice(models)
            embedding = self.random.random() < 0.1
            reports.append(
                EventReport(
                    id=self._id("req"),
                    account=account.public_id,
                    type="embedding" if embedding else "llm",
                    occurred_at=moment,
                    provider="openai" if embedding else provider,
                    model="text-embedding-3-small" if embedding else model,
                    input_tokens=self.random.randint(300, 6000),
                    output_tokens=0 if embedding else self.random.randint(80, 1600),
                )
            )
        for moment in self._moments(day, self._count(spec.flex_per_day, weight)):
            provider, model = self.random.choice(FLEX_MODELS)
            standard = Decimal(self.random.randint(800, 24000)) / 100000
            flex = self.random.random() < 0.7
            reports.append(
                EventReport(
                    id=self._id("flex"),
                    account=account.public_id,
                    type="llm",
                    occurred_at=moment,
                    provider=provider,
                    model=model,
                    input_tokens=self.random.randint(500, 8000),
                    output_tokens=self.random.randint(100, 2000),
                    start_within="00h-00m-30s" if flex else "default",
                    standard_price=standard,
                    flex_price=(standard * Decimal("0.55")).quantize(Decimal("0.000001")),
                )
            )
        return reports

    def top_up_if_low(self, spec: DemoAccount, moment: datetime) -> None:
        """A prepaid customer adds credit when less than 40% of a top-up is left."""
        account = Account.objects.get(pk=spec.account.pk)
        if not spec.topup_micros or account.balance_micros >= spec.topup_micros * 2 // 5:
            return
        started = topups.start_topup(
            account=account,
            amount_micros=spec.topup_micros,
            now=moment,
            success_url="/",
            cancel_url="/",
        )
        simulated.complete_test_topup(
            account=account,
            topup_public_id=started.topup.public_id,
            pay=True,
            now=moment + timedelta(minutes=1),
        )

    def run_jobs(self, moment: datetime) -> None:
        """The scheduled jobs, as they would have run at `moment`."""
        close_periods(now=moment)
        for invoice in invoice_thresholds(now=moment):
            collect_invoice(invoice_id=invoice.pk, now=moment)
        collect_due_invoices(now=moment)
        expire_credit(now=moment)

    def spans(self) -> list[list[int]]:
        """Group the days of history into spans: the jobs run at a span's start, its events
        are reported in one batch, its customers top up at its end. A week at a time, a day at
        a time in the last two weeks, and never across the start of any account's period (the
        period decides the allowance a charge uses, and period close runs at its start)."""
        anchors = {s.account.subscription.anchor_day for s in DEMO_ACCOUNTS}
        days = (self.now.date() - self.start.date()).days + 1
        spans: list[list[int]] = []
        for index in range(days):
            day = self.start + timedelta(days=index)
            starts_period = any(
                period_containing(anchor_day=a, moment=day)[0] == day for a in anchors
            )
            daily = days - index <= RECENT_DAYS
            if not spans or starts_period or daily or len(spans[-1]) == 7:
                spans.append([])
            spans[-1].append(index)
        return spans

    def build(self) -> None:
        self.open_accounts()
        for span in self.spans():
            first = self.start + timedelta(days=span[0])
            end = min(self.start + timedelta(days=span[-1], hours=22), self.now)
            self.run_jobs(first + timedelta(minutes=30))
            for spec in DEMO_ACCOUNTS:
                calls: list[CallReport] = []
                events: list[EventReport] = []
                for index in span:
                    day = self.start + timedelta(days=index)
                    weight = self._weight(index, day)
                    if spec.calls_per_day:
                        calls += self.call_reports(spec, day, weight)
                    if spec.chat_per_day or spec.llm_per_day or spec.flex_per_day:
                        events += self.event_reports(spec, day, weight)
                report_calls(calls)
                report_events(events)
                self.top_up_if_low(spec, end)
        self.finish_accounts()


def report_calls(reports: list[CallReport]) -> None:
    """Report each call as the platform does: once, final, as of the moment it ended."""
    for report in reports:
        report_call(report=report, now=report.ended_at)


def report_events(reports: list[EventReport]) -> None:
    """Report events in batches as large as the API takes, each as of its latest event."""
    for first in range(0, len(reports), MAX_BATCH):
        batch = reports[first : first + MAX_BATCH]
        ingest_events(reports=batch, now=max(e.occurred_at for e in batch))
