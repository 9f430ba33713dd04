"""Stress test of the ledger under concurrency. Not a test: prints its figures.

    uv run python scripts/stress_ledger.py [--seconds 60] [--processes 16]

Builds a fresh PostgreSQL database (STRESS_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/meterline_stress_ledger), then runs, for the given time, 16
OS processes against one prepaid account (voice-prepaid, auto-top-up on, opened 75 days ago so
that period close has periods to close while it is charged):

- chargers: batches of LLM events and call reports through `usage.ingest.events.ingest_events` and
  `usage.ingest.calls.report_call`, now and then a batch sent twice (the platform retrying);
- top-uppers: manual top-ups paid on the test-mode payment page (`complete_test_topup`), and
  the auto-top-ups the usage triggers, charged through the test-mode gateway;
- a refunder: calls credited back (`refund_call`) and top-ups refunded to the card
  (`refund_topup`);
- two chargers on a postpaid account (voice-payg, 200 USD billing threshold), so that the jobs
  have invoices to cut and charge;
- the scheduler: threshold invoicing, period close (with dunning), auto-top-up retries and
  credit expiry, one after the other, again and again.

Then checks, and prints: every balance equals the sum of its entries (and its credit grants);
the prepaid balance never went below zero; every item accepted once, stored once and charged
at most once, with charged + uncollected = cost; the rated totals equal a sequential model (the
accepted items replayed one by one through the rating functions); the refunds and top-ups each
posted once; the postpaid account's invoices plus what is still unbilled equal its usage.
Exits non-zero if a check fails.
"""

import argparse
import multiprocessing
import os
import random
import subprocess
import sys
import time
import traceback
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STRESS_DB = os.environ.get(
    "STRESS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/meterline_stress_ledger"
)
ENV = {
    "DATABASE_URL": STRESS_DB,
    "REDIS_URL": "",
    "DEBUG": "false",
    "PAYMENTS_TEST_MODE": "true",  # no Stripe keys here: simulated payments
    "SECRET_KEY": "stress-" + "x" * 60,
    "LOG_LEVEL": "WARNING",
    # Test settings: dj-stripe's squashed migration, emails and card charges inline, no worker.
    "DJANGO_SETTINGS_MODULE": "config.test_settings",
}
USD = 1_000_000
EVENTS_PER_BATCH = 20
MAIN_CHARGERS = 10
POSTPAID_CHARGERS = 2
TOPUPPERS = 2
# The rest: one refunder and one scheduler.


def prepare_database() -> None:
    import psycopg

    name = STRESS_DB.rsplit("/", 1)[1]
    with psycopg.connect(STRESS_DB.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=ROOT,
        env={**os.environ, **ENV},
        check=True,
    )


def setup_django() -> None:
    os.environ.update(ENV)
    import django

    django.setup()


def create_accounts() -> dict:
    from django.utils import timezone

    from billing.models import Plan
    from billing.payments.auto_topup import save_auto_topup_settings
    from billing.payments.cards import add_test_card
    from billing.plans.example_plans import load_example_plans
    from billing.plans.onboarding import create_account

    load_example_plans()
    now = timezone.now()
    opened = now - timedelta(days=75)  # two periods behind: period close has work to do
    main = create_account(
        name="Stress prepaid",
        email="prepaid@example.test",
        plan=Plan.objects.get(code="voice-prepaid"),
        now=opened,
        credit_micros=100 * USD,
    )
    add_test_card(account=main, behaviour="succeed", now=opened)
    save_auto_topup_settings(
        account=main, enabled=True, threshold_micros=20 * USD, amount_micros=50 * USD, now=opened
    )
    postpaid = create_account(
        name="Stress postpaid",
        email="postpaid@example.test",
        plan=Plan.objects.get(code="voice-payg"),
        now=opened,
    )
    add_test_card(account=postpaid, behaviour="succeed", now=opened)
    return {"main": main.public_id, "postpaid": postpaid.public_id}


# Workers -----------------------------------------------------------------------------------


def charger(index: int, account: str, deadline: float, big: bool) -> dict:
    """Report LLM events and calls until the deadline; return what was accepted."""
    from decimal import Decimal

    from django.utils import timezone

    from usage.ingest.calls import report_call
    from usage.ingest.events import ingest_events
    from usage.reports import CallReport, EventReport

    rng = random.Random(index)
    accepted_events, accepted_calls, answers = {}, {}, Counter()
    sent = calls_sent = 0
    previous = None
    while time.monotonic() < deadline:
        now = timezone.now()
        if previous is not None and rng.random() < 0.1:
            batch = previous  # the platform sends a batch again: all duplicates
        else:
            batch = [
                EventReport(
                    id=f"c{index}-e{sent + n}",
                    account=account,
                    type="llm",
                    occurred_at=now - timedelta(minutes=1),
                    model="gpt-4o",
                    provider="openai",
                    input_tokens=rng.randint(1, 1_000_000 if big else 300_000),
                    output_tokens=rng.randint(0, 2_000),
                )
                for n in range(EVENTS_PER_BATCH)
            ]
            sent += EVENTS_PER_BATCH
        previous = batch
        for report, result in zip(batch, ingest_events(reports=batch, now=now), strict=True):
            answers[result.status] += 1
            if result.status == "accepted":
                accepted_events[report.id] = (report, result.cost_micros)
        connected_at = now - timedelta(minutes=30)
        seconds = Decimal(rng.randint(1, 900_000)) / 1000
        call = CallReport(
            call_id=f"c{index}-call{calls_sent}",
            account=account,
            status="completed",
            connected_at=connected_at,
            ended_at=connected_at + timedelta(seconds=float(seconds)),
            llm="gpt-4o",
        )
        calls_sent += 1
        record, changed = report_call(report=call, now=now)
        answers["call accepted" if changed else "call repeated"] += 1
        if changed:
            accepted_calls[call.call_id] = (call, record.cost_micros)
    return {"events": accepted_events, "calls": accepted_calls, "answers": answers}


def topupper(index: int, account: str, deadline: float) -> dict:
    from django.utils import timezone

    from accounts.models import Account
    from billing.payments.simulated import complete_test_topup
    from billing.payments.topups import start_topup

    rng = random.Random(100 + index)
    target = Account.objects.get(public_id=account)
    paid = []
    while time.monotonic() < deadline:
        now = timezone.now()
        amount = rng.choice([20, 25]) * USD
        started = start_topup(
            account=target, amount_micros=amount, now=now, success_url="", cancel_url=""
        )
        complete_test_topup(
            account=target, topup_public_id=started.topup.public_id, pay=True, now=now
        )
        if rng.random() < 0.3:  # the customer double-clicks: the page is answered again
            complete_test_topup(
                account=target, topup_public_id=started.topup.public_id, pay=True, now=now
            )
        paid.append((started.topup.public_id, amount))
        # Seldom enough that usage sometimes drains the balance (the floor, auto-top-up).
        time.sleep(rng.uniform(2, 6))
    return {"topups": paid}


def refunder(account: str, deadline: float) -> dict:
    from django.utils import timezone

    from billing.models import TopUp, TopUpStatus
    from billing.payments.refunds import RefundError, refund_topup, refundable_micros
    from usage.ingest.calls import refund_call
    from usage.models import Call

    rng = random.Random(200)
    calls, topups, refused = [], [], 0
    while time.monotonic() < deadline:
        now = timezone.now()
        call_id = (
            Call.objects.filter(account__public_id=account, charged_micros__gt=0, refunded_micros=0)
            .order_by("?")
            .values_list("call_id", flat=True)
            .first()
        )
        if call_id:
            refund_call(call_id=call_id, now=now, reason="stress: the platform's fault")
            refund_call(call_id=call_id, now=now, reason="stress: asked twice")
            calls.append(call_id)
        # The newest paid top-up: older credit is spent first, so it has the most left.
        topup = (
            TopUp.objects.filter(account__public_id=account, status=TopUpStatus.SUCCEEDED)
            .select_related("grant")
            .order_by("-pk")
            .first()
        )
        amount = min(refundable_micros(topup), USD) // 10_000 * 10_000 if topup else 0
        if amount:
            key = f"stress-{len(topups) + refused}"
            try:
                refund = refund_topup(
                    topup=topup, amount_micros=amount, reason="stress", request_key=key, now=now
                )
            except RefundError:
                refused += 1  # spent meanwhile: the locked re-check refuses, as it should
            else:
                again = refund_topup(
                    topup=topup, amount_micros=amount, reason="stress", request_key=key, now=now
                )
                if again.pk != refund.pk:  # a double click must make no second refund
                    raise RuntimeError(f"a repeated refund request made refund {again.pk}")
                topups.append((refund.pk, refund.status))
        time.sleep(rng.uniform(0.05, 0.2))
    return {"call_refunds": calls, "topup_refunds": topups, "refused": refused}


def scheduler(deadline: float) -> dict:
    from billing import jobs

    runs = Counter()
    while time.monotonic() < deadline:
        for job in (
            jobs.invoice_thresholds,
            jobs.close_periods,
            jobs.retry_auto_topups,
            jobs.expire_credit,
        ):
            runs[f"{job.__name__}: {job()}"[:60]] += 1
    return {"runs": runs}


def _run(role, args, results) -> None:
    from django.db import connections

    connections.close_all()  # a forked child opens its own connection
    started = time.monotonic()
    try:
        outcome = role(*args)
        outcome["error"] = None
    except Exception:
        outcome = {"error": traceback.format_exc()}
    outcome["role"] = role.__name__
    outcome["seconds"] = time.monotonic() - started
    connections.close_all()
    results.put(outcome)


# Checks ------------------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.failed = []

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {name}{': ' + detail if detail else ''}")
        if not ok:
            self.failed.append(name)


def sequential_costs(account_public_id: str, events: dict, calls: dict) -> tuple[int, int]:
    """Replay the accepted items one by one through the rating functions; return the totals."""
    from accounts.models import Account
    from billing.plans.rates import ModelCatalog, RateCard
    from usage.rating.rules import rate_call, rate_tokens

    account = Account.objects.select_related("subscription__plan").get(public_id=account_public_id)
    plan = account.subscription.plan
    catalog, card = ModelCatalog(), RateCard(plan=plan, account=account)
    event_total = sum(
        rate_tokens(report=report, catalog=catalog).cost_micros for report, _ in events.values()
    )
    carries: dict = {}
    call_total = 0
    for report, _ in sorted(calls.values(), key=lambda item: item[0].call_id):
        rating = rate_call(
            report=report,
            plan=plan,
            card=card,
            carries=carries,
            allowance_remaining_seconds=0,
            at=report.connected_at,
        )
        carries = rating.carries or carries
        call_total += rating.cost_micros
    return event_total, call_total


def verify(accounts: dict, outcomes: list[dict]) -> Report:
    from django.db.models import Count, Sum

    from accounts.models import Account
    from billing.ledger.drift import ledger_drift
    from billing.models import EntryKind, Invoice, InvoiceKind, LedgerEntry, Refund, TopUp
    from usage.models import Call, UsageEvent

    report = Report()
    main = Account.objects.get(public_id=accounts["main"])
    postpaid = Account.objects.get(public_id=accounts["postpaid"])

    print("\nChecks")
    drift = ledger_drift()
    report.check(
        "every balance == sum of its ledger entries and of its grants", not drift, str(drift)
    )
    lowest = LedgerEntry.objects.filter(account=main).order_by("balance_after_micros").first()
    report.check(
        "prepaid balance never below zero",
        main.balance_micros >= 0 and lowest.balance_after_micros >= 0,
        f"final {main.balance_micros / USD:.6f} USD, "
        f"lowest {lowest.balance_after_micros / USD:.6f} USD",
    )

    for name, account in (("prepaid", main), ("postpaid", postpaid)):
        chargers = [o for o in outcomes if o.get("account") == account.public_id]
        events = {k: v for o in chargers for k, v in o["events"].items()}
        calls = {k: v for o in chargers for k, v in o["calls"].items()}
        accepted_ids = Counter(k for o in chargers for k in o["events"])
        report.check(
            f"{name}: every event id accepted once",
            max(accepted_ids.values(), default=1) == 1,
            f"{len(events)} events, {len(calls)} calls accepted",
        )
        stored_events = UsageEvent.objects.filter(account=account)
        stored_calls = Call.objects.filter(account=account)
        report.check(
            f"{name}: every accepted item stored once, nothing else stored",
            set(stored_events.values_list("event_id", flat=True)) == set(events)
            and stored_events.count() == len(events)
            and set(stored_calls.values_list("call_id", flat=True)) == set(calls)
            and stored_calls.count() == len(calls),
        )
        answered = sum(cost for _, cost in events.values()) + sum(c for _, c in calls.values())
        totals = {
            model.__name__: model.objects.filter(account=account).aggregate(
                cost=Sum("cost_micros"),
                charged=Sum("charged_micros"),
                gap=Sum("uncollected_micros"),
            )
            for model in (UsageEvent, Call)
        }
        cost = sum(t["cost"] or 0 for t in totals.values())
        charged = sum(t["charged"] or 0 for t in totals.values())
        uncollected = sum(t["gap"] or 0 for t in totals.values())
        report.check(
            f"{name}: stored costs == the costs answered, charged + uncollected == cost",
            cost == answered and charged + uncollected == cost,
            f"cost {cost / USD:.6f}, charged {charged / USD:.6f}, "
            f"uncollected {uncollected / USD:.6f} USD",
        )
        model_events, model_calls = sequential_costs(account.public_id, events, calls)
        report.check(
            f"{name}: rated totals == sequential model",
            model_events + model_calls == cost,
            f"model {(model_events + model_calls) / USD:.6f} USD",
        )
        usage_entries = LedgerEntry.objects.filter(account=account, kind=EntryKind.USAGE)
        per_cause = usage_entries.values("cause_type", "cause_id").annotate(n=Count("pk"))
        report.check(
            f"{name}: each item charged by at most one entry, entries == charged",
            max((row["n"] for row in per_cause), default=1) == 1
            and -(usage_entries.aggregate(t=Sum("amount_micros"))["t"] or 0) == charged,
            f"{usage_entries.count()} usage entries",
        )

    refunds = LedgerEntry.objects.filter(account=main, kind=EntryKind.REFUND)
    refunded_calls = Call.objects.filter(account=main, refunded_micros__gt=0)
    report.check(
        "each refunded call credited back once",
        refunds.count() == refunded_calls.count()
        and (refunds.aggregate(t=Sum("amount_micros"))["t"] or 0)
        == (refunded_calls.aggregate(t=Sum("refunded_micros"))["t"] or 0),
        f"{refunded_calls.count()} calls",
    )
    card_refunds = Refund.objects.filter(topup__account=main)
    refund_entries = LedgerEntry.objects.filter(account=main, kind=EntryKind.TOPUP_REFUND)
    report.check(
        "each top-up refund to the card posted once",
        refund_entries.count() == card_refunds.count()
        and -(refund_entries.aggregate(t=Sum("amount_micros"))["t"] or 0)
        == (card_refunds.aggregate(t=Sum("amount_micros"))["t"] or 0),
        f"{card_refunds.count()} refunds",
    )
    paid = TopUp.objects.filter(account=main, entry__isnull=False)
    credits = LedgerEntry.objects.filter(
        account=main, kind__in=[EntryKind.TOPUP, EntryKind.AUTO_TOPUP]
    )
    report.check(
        "each paid top-up credited once",
        credits.count() == paid.count()
        and credits.aggregate(t=Sum("amount_micros"))["t"]
        == paid.aggregate(t=Sum("amount_micros"))["t"],
        f"{paid.filter(kind='manual').count()} manual, {paid.filter(kind='auto').count()} auto",
    )
    invoices = Invoice.objects.filter(account=postpaid, kind=InvoiceKind.INVOICE)
    invoiced = invoices.aggregate(t=Sum("total_micros"))["t"] or 0
    postpaid.refresh_from_db()
    postpaid_cost = sum(
        model.objects.filter(account=postpaid).aggregate(t=Sum("cost_micros"))["t"] or 0
        for model in (UsageEvent, Call)
    )
    report.check(
        "postpaid: invoiced + still unbilled == usage (each charge invoiced once)",
        invoiced + postpaid.unbilled_micros == postpaid_cost,
        f"{invoices.count()} invoices, {invoiced / USD:.6f} + {postpaid.unbilled_micros / USD:.6f}"
        f" USD unbilled",
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--processes", type=int, default=16)
    args = parser.parse_args()
    others = MAIN_CHARGERS + POSTPAID_CHARGERS + TOPUPPERS + 2
    if args.processes < others:
        parser.error(f"at least {others} processes")

    prepare_database()
    setup_django()
    from django.db import connections

    accounts = create_accounts()
    connections.close_all()

    deadline = time.monotonic() + args.seconds
    main_chargers = MAIN_CHARGERS + args.processes - others
    roles = [(charger, (n, accounts["main"], deadline, False)) for n in range(main_chargers)]
    roles += [
        (charger, (main_chargers + n, accounts["postpaid"], deadline, True))
        for n in range(POSTPAID_CHARGERS)
    ]
    roles += [(topupper, (n, accounts["main"], deadline)) for n in range(TOPUPPERS)]
    roles += [(refunder, (accounts["main"], deadline)), (scheduler, (deadline,))]

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_run, args=(role, a, results)) for role, a in roles]
    print(f"{len(processes)} processes for {args.seconds:.0f} s on {STRESS_DB}")
    started = time.monotonic()
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=args.seconds + 600) for _ in processes]
    for process in processes:
        process.join()
    elapsed = time.monotonic() - started
    # Tie each charger's outcome to its account (chargers return in any order).
    charger_accounts = {f"c{a[0]}": a[1] for r, a in roles if r is charger}
    for outcome in outcomes:
        if outcome["role"] == "charger" and outcome.get("events") is not None:
            ids = list(outcome["events"]) + list(outcome["calls"])
            if ids:
                outcome["account"] = charger_accounts[ids[0].split("-")[0]]

    errors = [o for o in outcomes if o["error"]]
    answers = Counter()
    for o in outcomes:
        answers.update(o.get("answers", {}))
    print(f"\nRan {elapsed:.1f} s (load: {os.getloadavg()[0]:.2f})")
    print(f"  usage answers: {dict(answers)}")
    items = answers["accepted"] + answers["call accepted"]
    print(f"  items accepted: {items} ({items / args.seconds:.0f}/s)")
    topups = sum(len(o.get("topups", [])) for o in outcomes)
    print(f"  manual top-ups paid: {topups}")
    for o in outcomes:
        if o["role"] == "refunder" and not o["error"]:
            print(
                f"  refunds: {len(o['call_refunds'])} calls credited back, "
                f"{len(o['topup_refunds'])} top-ups refunded to the card, "
                f"{o['refused']} refused (credit spent meanwhile)"
            )
        if o["role"] == "scheduler" and not o["error"]:
            print(f"  scheduler: {sum(o['runs'].values())} job runs")
            for line, times in sorted(o["runs"].items()):
                print(f"    {times:4d} x {line}")
    for o in errors:
        print(f"\nprocess {o['role']} failed:\n{o['error']}")

    report = verify(accounts, [o for o in outcomes if not o["error"]])
    if errors:
        report.failed.append("processes failed")
    print("\nResult:", "all checks passed" if not report.failed else f"FAILED {report.failed}")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
