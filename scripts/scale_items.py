"""Usage items for scripts/usage_generator.py: their shapes, their rating, their rows.

A `Shard` generates the items of a set of accounts, each account in time order: it draws each
item's shape (status, duration, model, tokens...), rates it with the real rating functions of
`usage.rating`, has `scripts.scale_charging.AccountRun` charge it, and writes the call or
event row. Several shards can run in parallel processes, each with its own connection and its
own range of ids.

Speed, without changing what is written:
- Rating is memoised on everything it reads: the item's shape, and the carries and allowance
  it would use. Shapes come from pools of a few thousand durations, token counts and flex
  prices with realistic distributions, so most ratings repeat; minute aggregation's carries
  still make most calls of pay-as-you-go plans a fresh rating. This needs every price to stay
  the same through the period, which scripts/usage_generator.py checks.
- Content hashes are the SHA-256 of the item's id, not of its report: nothing replays these
  reports, and the real hash costs more than rating.
- Times are integer milliseconds from the period start, formatted from cached prefixes.
"""

import bisect
import hashlib
import itertools
import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from scripts.scale_charging import USD, AccountRun, Sink

# Share of an account's items that are calls, and the weights of its event types, by plan.
ITEM_MIX = {
    "voice-prepaid": (0.92, [("sms", 1)]),
    "voice-payg": (0.80, [("chat", 3), ("sms", 1)]),
    "voice-enterprise": (0.80, [("chat", 3), ("sms", 1)]),
    "credits-monthly": (0.95, [("sms", 1)]),
    "llm-api": (0.0, [("llm", 85), ("embedding", 15)]),
    "flex-router": (0.0, [("llm", 1)]),
}
CALL_STATUSES = [
    ("completed", 82),
    ("transferred", 5),
    ("no_answer", 5),
    ("hangup_on_voicemail", 3),
    ("failed", 3),
    ("spam", 2),
]
FLEX_ROUTING = [  # start_within, provider, model, weight
    ("00h-00m-30s", "openai", "gpt-4o", 30),
    ("00h-05m-00s", "openai", "gpt-4.1", 15),
    ("00h-01m-00s", "google", "gemini-2.5-pro", 10),
    ("00h-00m-30s", "anthropic", "claude-sonnet-4", 15),  # excluded provider: free
    ("default", "openai", "gpt-4o", 20),
    ("auto", "google", "gemini-2.5-pro", 5),
    ("priority", "openai", "gpt-4.1", 5),
]
# Rough cost of an item by plan, to size prepaid top-ups; exactness does not matter.
EXPECTED_COST_MICROS = {
    "voice-prepaid": 150_000,
    "voice-payg": 250_000,
    "voice-enterprise": 250_000,
    "credits-monthly": 150_000,
    "llm-api": 3_000,
    "flex-router": 10_000,
}
# Distinct values drawn for each shape pool (durations, token counts, flex prices).
POOL_SIZE = 2048
# Memoised ratings kept before the memo is emptied, to bound memory (~1 KB each).
MEMO_LIMIT = 50_000
# Items buffered before a chunk is written (one COPY per table, one transaction).
CHUNK_ITEMS = 25_000
# Milliseconds between an item's end and its charge: the platform reports shortly after.
REPORT_DELAY_MS = 2000
MS_PER_MINUTE = 60_000
MS_PER_DAY = 86_400_000


class Weighted:
    """Weighted choice by bisecting cumulative weights (options are the tuples less weight)."""

    def __init__(self, choices: list[tuple]):
        self.values = [c[0] if len(c) == 2 else c[:-1] for c in choices]
        self.cumulative = list(itertools.accumulate(c[-1] for c in choices))

    def pick(self, rng: random.Random):
        return self.values[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]


class Clock:
    """Milliseconds from the period start as COPY text, UTC days and datetimes."""

    def __init__(self, start: datetime, span_ms: int):
        self.start = start
        minutes = span_ms // MS_PER_MINUTE + 2
        self.prefixes = [
            (start + timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M:") for m in range(minutes)
        ]
        self.days = [(start + timedelta(days=d)).date() for d in range(minutes // 1440 + 2)]

    def text(self, ms: int) -> str:
        minute, rest = divmod(ms, MS_PER_MINUTE)
        return f"{self.prefixes[minute]}{rest // 1000:02d}.{rest % 1000:03d}+00"

    def day(self, ms: int):
        # The period starts at midnight UTC, so whole days from it are UTC days (rollup_day).
        return self.days[ms // MS_PER_DAY]


# jsonb keeps no whitespace, and an explanation has no cycles to look for.
JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class FixedMomentCard:
    """A rate card read at one moment, its answers kept: rating asks the same few questions
    for every item, and nothing changes price inside the period."""

    def __init__(self, card):
        self._card = card
        self._answers: dict[tuple, object] = {}

    def _ask(self, question: str, *args):
        key = (question, *args)
        if key not in self._answers:
            self._answers[key] = getattr(self._card, question)(*args)
        return self._answers[key]

    def rate(self, component, key, at):
        return self._ask("rate", component, key, at)

    def has_component(self, component):
        return self._ask("has_component", component)

    def keys(self, component):
        return self._ask("keys", component)

    def destination(self, number, at):
        return self._ask("destination", number, at)


class Rated:
    """What charging needs from a rating, computed once per memoised rating."""

    __slots__ = (
        "allowance_seconds",
        "carries",
        "cost",
        "explanation",
        "lines",
        "quantity",
        "savings",
    )

    def __init__(self, rating, explanation: dict):
        from usage.rating.rules import savings_micros

        self.cost = rating.cost_micros
        self.quantity = rating.billable_quantity
        self.allowance_seconds = rating.allowance_seconds
        self.carries = tuple(rating.carries.items())
        self.lines = tuple(
            (line.component, line.key[:100], line.amount_micros, line.base_quantity)
            for line in rating.lines
        )
        self.savings = savings_micros(rating)
        # json.dumps escapes tabs, newlines and non-ASCII as \t, \n, \uXXXX: only its
        # backslashes need escaping for COPY's text format.
        self.explanation = JSON.encode(explanation).replace("\\", "\\\\")


class Shard:
    """Generates the items of some accounts through one connection, with its own id ranges."""

    def __init__(
        self,
        *,
        cursor,
        plans,
        start: datetime,
        span_ms: int,
        seed: int,
        tag: str,
        first_ids: dict[str, int],
    ):
        from django.contrib.contenttypes.models import ContentType

        from accounts.models import new_public_id
        from billing.models import TopUp
        from billing.plans.example_plans import (
            DESTINATION_SURCHARGES,
            LLM_MINUTE_RATES,
            MODEL_PRICES,
        )
        from billing.plans.rates import ModelCatalog, RateCard
        from usage.models import Call, UsageEvent

        # The pools are the same in every shard; the draws from them are the shard's own.
        pools = random.Random(seed)
        self.rng = random.Random(f"{seed}:{tag}")
        self.tag = tag
        self.new_public_id = new_public_id
        self.clock = Clock(start, span_ms)
        # Rating reads prices at the item's time; none changes inside the period, so any
        # moment in it rates alike and ratings can be memoised.
        self.rating_moment = start + timedelta(hours=1)
        self.plans = plans
        self.cards = {
            code: FixedMomentCard(RateCard(plan=plan, account=None)) for code, plan in plans.items()
        }
        self.catalog = ModelCatalog()
        self.content_types = {
            "call": ContentType.objects.get_for_model(Call).pk,
            "event": ContentType.objects.get_for_model(UsageEvent).pk,
            "topup": ContentType.objects.get_for_model(TopUp).pk,
        }
        self.expected_cost = EXPECTED_COST_MICROS
        self.llms = sorted(LLM_MINUTE_RATES)
        # A few numbers per international prefix (longest prefix wins: +4420 within +44).
        self.numbers = [
            prefix + str(pools.randrange(10**8, 10**9))
            for prefix in sorted(DESTINATION_SURCHARGES)
            for _ in range(4)
        ]
        self.text_models = [(p, m) for p, m, kind, *_ in MODEL_PRICES if kind == "text"]
        self.embedding_models = [(p, m) for p, m, kind, *_ in MODEL_PRICES if kind == "embedding"]
        self.statuses = Weighted(CALL_STATUSES)
        self.flex = Weighted(FLEX_ROUTING)
        self.event_mix = {code: Weighted(mix) for code, (_, mix) in ITEM_MIX.items()}
        # Call durations: median ~90 s, at most an hour.
        self.call_ms = [
            min(int(pools.lognormvariate(11.4, 0.9)) + 1000, 3_600_000) for _ in range(POOL_SIZE)
        ]
        # Token counts come in (input, output) pairs, flex requests with their two prices.
        self.llm_tokens = [
            (int(pools.lognormvariate(7.0, 1.0)) + 1, int(pools.lognormvariate(5.5, 1.0)))
            for _ in range(POOL_SIZE)
        ]
        self.embedding_tokens = [int(pools.lognormvariate(6.0, 1.0)) + 1 for _ in range(POOL_SIZE)]
        self.flex_prices = []
        for _ in range(POOL_SIZE):
            standard = Decimal(pools.randint(50, 5000)) / 10000
            flex = (standard * Decimal(pools.randint(40, 105)) / 100).quantize(Decimal("0.0001"))
            self.flex_prices.append((standard, flex, *pools.choice(self.llm_tokens)))
        self.memo: dict[tuple, Rated] = {}
        self.prefixes: dict[tuple[str, str], str] = {}
        self.entry_ids = itertools.count(first_ids["billing_ledgerentry"])
        self.grant_ids = itertools.count(first_ids["billing_creditgrant"])
        self.topup_ids = itertools.count(first_ids["billing_topup"])
        self.call_ids = itertools.count(first_ids["usage_call"])
        self.event_ids = itertools.count(first_ids["usage_usageevent"])
        self.item_numbers = itertools.count(1)
        self.sink = Sink(cursor)
        self.calls = self.events = self.ratings = 0
        self.entries = self.topups = self.rollups = self.unbilled_lines = self.cost_micros = 0

    def prefix(self, run: AccountRun, number: str) -> str:
        """The destination prefix a number is billed by on the account's rate card."""
        key = (run.code, number)
        if key not in self.prefixes:
            rate = run.card.destination(number, self.rating_moment)
            self.prefixes[key] = rate.key if rate else ""
        return self.prefixes[key]

    def _memo(self, key: tuple, rate: Callable[[], tuple]) -> Rated:
        rated = self.memo.get(key)
        if rated is None:
            if len(self.memo) >= MEMO_LIMIT:
                self.memo.clear()
            rated = self.memo[key] = Rated(*rate())
            self.ratings += 1
        return rated

    # Calls (usage.ingest.calls.report_call) ----------------------------------------------------

    def call(self, run: AccountRun, ended_ms: int) -> None:
        from usage.rating.rules import rate_call
        from usage.reports import CallReport

        rng = self.rng
        status = self.statuses.pick(rng)
        direction = "outbound" if rng.random() < 0.25 else "inbound"
        llm = rng.choice(self.llms) if run.per_llm else ""
        number = ""
        if run.per_llm and rng.random() < 0.08:
            number = rng.choice(self.numbers)
        millis = hold = 0
        if status in ("completed", "transferred", "spam"):
            millis = rng.choice(self.call_ms)
            if rng.random() < 0.08:
                hold = min(rng.randint(5, 90), millis // 1000)
        transfer_ms = millis * 3 // 5 if status == "transferred" else None
        carries = ()
        if run.plan.minute_aggregation:
            # The carries this call's rates read: its LLM, the voice engine, its destination.
            idents = [("llm", llm), ("voice_engine", "")]
            if number:
                idents.append(("destination", self.prefix(run, number)))
            carries = tuple(run.carries.get(ident, 0) for ident in idents)
        key = (
            "call",
            run.code,
            status,
            direction,
            millis,
            hold,
            transfer_ms,
            number,
            llm,
            carries,
            run.allowance_key(),
        )

        def rate():
            ended = self.rating_moment + timedelta(hours=2)
            connected = ended - timedelta(milliseconds=millis) if millis else None
            report = CallReport(
                call_id="memo",
                account=run.public_id,
                status=status,
                direction=direction,
                connected_at=connected,
                ended_at=ended,
                transferred_at=connected + timedelta(milliseconds=transfer_ms)
                if transfer_ms is not None
                else None,
                hold_seconds=Decimal(hold),
                destination=number,
                llm=llm,
            )
            rating = rate_call(
                report=report,
                plan=run.plan,
                card=run.card,
                carries=run.carries,
                allowance_remaining_seconds=run.allowance_total - run.allowance_used,
                at=self.rating_moment,
            )
            return rating, {**rating.explanation, "uncollected": 0}

        rated = self._memo(key, rate)
        text = self.clock.text
        call_id = f"call-{self.tag}-{next(self.item_numbers):09d}"
        call_pk = next(self.call_ids)
        connected_ms = ended_ms - millis if millis else None
        charged_ms = ended_ms + REPORT_DELAY_MS
        entry_id = run.charge(
            rated=rated,
            kind="usage",
            cause_type=self.content_types["call"],
            cause_id=call_pk,
            description=f"Call {call_id}: {rated.quantity} s",
            at=text(charged_ms),
            day=self.clock.day(connected_ms if millis else ended_ms),
            component="call",
            provider="",
            model=llm,
            output_tokens=0,
        )
        charged = text(charged_ms)
        cost = rated.cost
        self.sink.add(
            "usage_call",
            f"{call_pk}\t{call_id}\t{run.account_id}\t{status}\t{direction}\t"
            f"{text(connected_ms) if millis else chr(92) + 'N'}\t{text(ended_ms)}\t"
            f"{text(connected_ms + transfer_ms) if transfer_ms else chr(92) + 'N'}\t{hold}\t"
            f"{number}\t{llm}\t{rated.quantity}\t{rated.allowance_seconds}\t{cost}\t{cost}\t0\t"
            f"{rated.explanation}\t{hashlib.sha256(call_id.encode()).hexdigest()}\t{charged}\t"
            f"{entry_id or chr(92) + 'N'}\t0\t\\N\t{charged}\t{charged}\n",
        )
        self.calls += 1

    # Events (usage.ingest.events.ingest_events) ------------------------------------------------

    def event(self, run: AccountRun, occurred_ms: int) -> None:
        from usage.rating.rules import rate_chat, rate_commission, rate_sms, rate_tokens
        from usage.reports import EventReport

        rng = self.rng
        kind = self.event_mix[run.code].pick(rng)
        commission = run.plan.commission_percent is not None
        fields: dict = {}
        if kind == "chat":
            fields = {"messages": rng.randint(1, 12)}
            # Chat reads its carried messages and the allowance.
            key = (
                "chat",
                run.code,
                fields["messages"],
                run.carries.get(("chat", ""), 0),
                run.allowance_key(),
            )
        elif kind == "sms":
            fields = {"count": rng.choice((1, 1, 1, 2, 3))}
            key = ("sms", run.code, fields["count"])
        elif kind == "embedding":
            provider, model = rng.choice(self.embedding_models)
            fields = {
                "provider": provider,
                "model": model,
                "input_tokens": rng.choice(self.embedding_tokens),
            }
            key = ("embedding", run.code, *fields.values())
        elif commission:
            start_within, provider, model = self.flex.pick(rng)
            standard, flex, input_tokens, output_tokens = rng.choice(self.flex_prices)
            fields = {
                "provider": provider,
                "model": model,
                "start_within": start_within,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "standard_price": standard,
                "flex_price": flex,
            }
            key = ("flex", run.code, *fields.values())
        else:
            provider, model = rng.choice(self.text_models)
            input_tokens, output_tokens = rng.choice(self.llm_tokens)
            fields = {
                "provider": provider,
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
            }
            key = ("llm", run.code, *fields.values())

        def rate():
            report = EventReport(
                id="memo",
                account=run.public_id,
                type=kind,
                occurred_at=self.rating_moment,
                **fields,
            )
            # As usage.ingest.events._rate chooses.
            if kind == "chat":
                rating = rate_chat(
                    report=report,
                    plan=run.plan,
                    card=run.card,
                    carries=run.carries,
                    allowance_remaining_seconds=run.allowance_total - run.allowance_used,
                )
            elif kind == "sms":
                rating = rate_sms(report=report, card=run.card)
            elif commission:
                rating = rate_commission(report=report, plan=run.plan)
            else:
                rating = rate_tokens(report=report, catalog=self.catalog)
            return rating, rating.explanation

        rated = self._memo(key, rate)
        ledger_kind, component = "usage", kind
        if commission and kind == "llm":
            ledger_kind, component = "commission", "flex"
        event_id = f"ev-{self.tag}-{next(self.item_numbers):09d}"
        event_pk = next(self.event_ids)
        created_ms = occurred_ms + REPORT_DELAY_MS
        provider = fields.get("provider", "")
        model = fields.get("model", "")
        output_tokens = fields.get("output_tokens", 0)
        run.charge(
            rated=rated,
            kind=ledger_kind,
            cause_type=self.content_types["event"],
            cause_id=event_pk,
            description=f"{kind} {event_id}",
            at=self.clock.text(created_ms),
            day=self.clock.day(occurred_ms),
            component=component,
            provider=provider,
            model=model,
            output_tokens=output_tokens,
        )
        standard = fields.get("standard_price")
        flex = fields.get("flex_price")
        cost = rated.cost
        self.sink.add(
            "usage_usageevent",
            f"{event_pk}\t{event_id}\t{run.account_id}\t{kind}\t{self.clock.text(occurred_ms)}\t"
            f"{hashlib.sha256(event_id.encode()).hexdigest()}\t{provider}\t{model}\t"
            f"{rated.quantity}\t{output_tokens}\t{fields.get('start_within', '')}\t"
            f"{int(standard * USD) if standard is not None else chr(92) + 'N'}\t"
            f"{int(flex * USD) if flex is not None else chr(92) + 'N'}\t{cost}\t{cost}\t0\t"
            f"{rated.explanation}\t\\N\t0\t{self.clock.text(created_ms)}\n",
        )
        self.events += 1

    # Accounts ---------------------------------------------------------------------------

    def run_accounts(self, accounts, *, start, end, first_ms: int, span_ms: int, progress=None):
        """Generate the items of `accounts` ((id, public id, plan code, item count) each).

        Return one line per account, "id\tbalance\tunbilled\n", for the cached totals.
        """
        totals = []
        done = 0
        for pk, public, code, count in accounts:
            run = AccountRun(
                shard=self, account_id=pk, public_id=public, plan=self.plans[code], item_count=count
            )
            run.open(start=start, end=end)
            call_share = ITEM_MIX[code][0]
            for moment_ms in sorted(first_ms + self.rng.randrange(span_ms) for _ in range(count)):
                if call_share and self.rng.random() < call_share:
                    self.call(run, moment_ms)
                else:
                    self.event(run, moment_ms)
                self.sink.pending_items += 1
                if self.sink.pending_items >= CHUNK_ITEMS:
                    self.sink.flush()
                    if progress:
                        progress(done)
            run.close(start=start, end=end)
            totals.append(f"{pk}\t{run.balance}\t{run.unbilled_micros}\n")
            self.entries += run.entries
            self.topups += run.topups
            self.rollups += len(run.rollups)
            self.unbilled_lines += len(run.unbilled)
            self.cost_micros += run.cost_micros
            done += count
        self.sink.flush()
        return totals
