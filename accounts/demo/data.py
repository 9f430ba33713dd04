"""Demo dataset for `manage.py demo`: users, accounts on every example plan, 90 days of history.

The history is made by the real services with `now` set back in time, day by day, as the
platform and the scheduled jobs would have made it: calls and events are reported and rated,
customers top up when their credit runs low, threshold invoices are cut and charged, periods
close into invoices and statements, alerts are recorded. So every page of the dashboard shows
figures that agree with the ledger. The random choices are seeded: every build is the same.

Emails of that history are recorded as sent without being printed (locmem backend during the
build), so the console is not flooded when the demo starts.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from allauth.account.models import EmailAddress
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone

from accounts.keys import issue_api_key, revoke_api_key
from accounts.models import Account, KeyKind, Membership, RateTier, Role, User
from accounts.team import invite_member
from accounts.tier_requests import request_higher_tier
from billing.invoicing.invoices import invoice_thresholds
from billing.invoicing.period_close import close_periods
from billing.ledger.expiry import expire_credit
from billing.ledger.locks import lock_account
from billing.models import EntryKind, Plan, TestCardBehaviour
from billing.payments import auto_topup, cards, topups
from billing.payments.collection import collect_due_invoices, collect_invoice
from billing.periods import period_containing
from billing.plans.example_plans import load_example_plans
from billing.plans.onboarding import create_account
from usage.api.ratelimit import hit
from usage.charging.rollups import rollup_day
from usage.charging.session import ChargeSession
from usage.ingest.calls import refund_call
from usage.ingest.events import ingest_events
from usage.ingest.fingerprints import call_hash
from usage.models import Call
from usage.rating.rules import rate_call
from usage.reports import CallReport, EventReport
from usage.spending import budgets

DEMO_PASSWORD = "meterline-demo"  # noqa: S105 - a published demo login, local only  # nosec B105
CUSTOMER_EMAIL = "demo@meterline.test"
VIEWER_EMAIL = "viewer@meterline.test"
OTHER_EMAIL = "globex@meterline.test"
STAFF_EMAIL = "admin@meterline.test"
HISTORY_DAYS = 90
RECENT_DAYS = 14  # charged day by day; older history a week at a time
USD = 1_000_000

LLMS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-flash"]
CHAT_MODELS = [
    ("openai", "gpt-4o-mini", 5),
    ("openai", "gpt-4o", 2),
    ("meta", "llama-3.3-70b", 2),
    ("mistral", "mistral-small", 1),
]
FLEX_MODELS = [("openai", "gpt-4o"), ("meta", "llama-3.3-70b"), ("anthropic", "claude-sonnet-4")]


@dataclass
class DemoAccount:
    """One demo account and how busy it is: calls a day, their length, events a day."""

    name: str
    plan: str
    owner_email: str
    credit_micros: int = 0
    calls_per_day: float = 0
    call_seconds: tuple[int, int] = (30, 300)
    chat_per_day: int = 0
    llm_per_day: int = 0
    flex_per_day: int = 0
    topup_micros: int = 0  # the customer adds this much when the balance runs low
    card: bool = False
    parent: str = ""
    anchor_day: int | None = None
    account: Account | None = field(default=None, repr=False)


DEMO_ACCOUNTS = [
    DemoAccount(
        "Acme Voice",
        "voice-prepaid",
        CUSTOMER_EMAIL,
        credit_micros=50 * USD,
        calls_per_day=6,
        call_seconds=(20, 420),
        topup_micros=50 * USD,
        card=True,
    ),
    DemoAccount(
        "Acme Voice PAYG",
        "voice-payg",
        CUSTOMER_EMAIL,
        calls_per_day=7,
        call_seconds=(60, 900),
        chat_per_day=30,
        card=True,
    ),
    DemoAccount(
        "Acme Enterprise",
        "voice-enterprise",
        CUSTOMER_EMAIL,
        calls_per_day=6,
        call_seconds=(600, 2700),
        chat_per_day=25,
        card=True,
    ),
    DemoAccount(
        "Acme Receptionist",
        "credits-monthly",
        CUSTOMER_EMAIL,
        calls_per_day=5,
        call_seconds=(30, 360),
        topup_micros=10 * USD,
    ),
    DemoAccount(
        "Acme LLM", "llm-api", CUSTOMER_EMAIL, llm_per_day=18, topup_micros=20 * USD, card=True
    ),
    DemoAccount("Acme Router", "flex-router", CUSTOMER_EMAIL, flex_per_day=22, card=True),
    DemoAccount(
        "Acme Voice EU (subaccount)",
        "voice-prepaid",
        CUSTOMER_EMAIL,
        credit_micros=20 * USD,
        calls_per_day=3,
        topup_micros=20 * USD,
        parent="Acme Voice",
    ),
    DemoAccount(
        "Globex Calls",
        "voice-prepaid",
        OTHER_EMAIL,
        credit_micros=40 * USD,
        calls_per_day=2,
        topup_micros=40 * USD,
        anchor_day=1,
    ),
    DemoAccount("Globex PAYG", "voice-payg", OTHER_EMAIL, calls_per_day=2, card=True, anchor_day=1),
    DemoAccount(
        "Globex AI", "llm-api", OTHER_EMAIL, llm_per_day=6, topup_micros=10 * USD, anchor_day=1
    ),
]


def _user(email: str, **extra) -> User:
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=DEMO_PASSWORD, **extra)
    EmailAddress.objects.get_or_create(
        user=user, email=email, defaults={"verified": True, "primary": True}
    )
    return user


def build_demo(*, now: datetime | None = None) -> list[str]:
    """Create the demo users, accounts and their history once; describe what exists."""
    now = now or timezone.now()
    load_example_plans()
    staff = _user(STAFF_EMAIL, is_staff=True, is_superuser=True, name="Demo Staff")
    customer = _user(CUSTOMER_EMAIL, name="Demo Customer")
    lines = [f"staff: {staff.email} / {DEMO_PASSWORD}", f"customer: {customer.email}"]
    if not Membership.objects.filter(user=customer).exists():
        # The history's emails are recorded as sent, not printed; charges run inline.
        # One transaction: all of it or nothing (and SQLite writes it in one go).
        with (
            override_settings(
                EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
                NOTIFICATIONS_SYNC=True,
                PAYMENTS_SYNC=True,
            ),
            transaction.atomic(),
        ):
            History(now=now, staff=staff, customer=customer).build()
    for account in Account.objects.filter(memberships__user=customer).order_by("name"):
        lines.append(f"account {account.public_id}: {account.name}")
    return lines


class History:
    def __init__(self, *, now: datetime, staff: User, customer: User):
        self.now = now
        self.staff = staff
        self.customer = customer
        self.random = random.Random(20261122)
        self.start = datetime.combine(
            (now - timedelta(days=HISTORY_DAYS)).date(), time(0), tzinfo=UTC
        )
        self._sequence = 0

    def _id(self, prefix: str) -> str:
        self._sequence += 1
        return f"demo-{prefix}-{self._sequence:06d}"

    # Accounts, keys, team ---------------------------------------------------------------------

    def open_accounts(self) -> None:
        plans = {p.code: p for p in Plan.objects.all()}
        owners = {
            CUSTOMER_EMAIL: self.customer,
            OTHER_EMAIL: _user(OTHER_EMAIL, name="Globex Owner"),
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
        viewer = _user(VIEWER_EMAIL, name="Demo Viewer")
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

    # A day of usage ---------------------------------------------------------------------------

    def _weight(self, day_index: int, moment: datetime) -> float:
        """Busier on weekdays, and growing: the last month is about 40% above the first."""
        weekday = 1.0 if moment.weekday() < 5 else 0.45
        return weekday * (0.8 + 0.55 * day_index / HISTORY_DAYS)

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
            test_page_url="/{TOPUP}",
        )
        topups.complete_test_topup(
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
        """Group the days of history into spans charged together: a week at a time, a day at
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
                if calls:
                    charge_final_calls(account_id=spec.account.pk, reports=calls)
                if events:
                    ingest_events(reports=events, now=max(e.occurred_at for e in events))
                self.top_up_if_low(spec, end)
        self.finish_accounts()


def charge_final_calls(*, account_id: int, reports: list[CallReport]) -> None:
    """Rate and charge the final calls of one account in one charge session.

    What `usage.ingest.calls.report_call` does for one call, with the same rating and charging code,
    batched as event ingestion batches events: one lock, one session, one bulk insert. About
    forty times faster for the 90 days of history; the live API reports calls one by one.
    """
    now = max(r.ended_at for r in reports)
    with transaction.atomic():
        account = lock_account(account_id)
        session = ChargeSession(account=account, now=now)
        pending = []
        for report in reports:
            at = report.connected_at or report.ended_at
            rating = rate_call(
                report=report,
                plan=session.plan,
                card=session.card,
                carries=session.carries,
                allowance_remaining_seconds=session.allowance_remaining_seconds(at=at),
                at=at,
            )
            call = Call(
                call_id=report.call_id,
                account=account,
                status=report.status,
                direction=report.direction,
                connected_at=report.connected_at,
                ended_at=report.ended_at,
                transferred_at=report.transferred_at,
                hold_seconds=report.hold_seconds,
                destination=report.destination,
                llm=report.llm,
                final_hash=call_hash(report),
                billable_seconds=rating.billable_quantity,
                allowance_seconds=rating.allowance_seconds,
                cost_micros=rating.cost_micros,
                charged_at=report.ended_at,
                created_at=report.ended_at,
                updated_at=report.ended_at,
            )
            charged = session.charge(
                rating=rating,
                kind=EntryKind.USAGE,
                cause=call,
                description=f"Call {report.call_id}: {rating.billable_quantity} s",
                day=rollup_day(at),
                component="call",
                model=report.llm,
            )
            call.charged_micros = charged.charged_micros
            call.uncollected_micros = charged.uncollected_micros
            call.explanation = {**rating.explanation, "uncollected": charged.uncollected_micros}
            pending.append((call, charged))
        Call.objects.bulk_create([call for call, _ in pending])
        session.close()
        charged_calls = []
        for call, charged in pending:
            if charged.posting is not None:
                call.ledger_entry = charged.posting.entry
                charged_calls.append(call)
        Call.objects.bulk_update(charged_calls, ["ledger_entry"], batch_size=500)
