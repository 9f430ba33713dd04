"""What charging rated items leaves in the database, for scripts/usage_generator.py.

`AccountRun` does for one account, item after item, what `usage.charging.session.ChargeSession` and
`billing.ledger.posting.apply_postings` do: debit the balance (topping a prepaid account up before
its credit runs low), spend credit grants in spending order, count rollups, unbilled lines, carries
and allowance. It writes COPY lines into a `Sink`, which sends them to PostgreSQL a chunk at a time.
Nothing here reads the database.
"""

import io
import math
import time
from collections import defaultdict

from scripts.benchdb import copy_line

USD = 1_000_000

# The columns each table is written with, in COPY order.
TABLE_COLUMNS = {
    "billing_creditgrant": "id account_id kind amount_micros remaining_micros priority expires_at"
    " created_at expired_at",
    "billing_ledgerentry": "id account_id kind amount_micros balance_after_micros created_at"
    " cause_type_id cause_id grant_id actor_id reason description idempotency_key",
    "billing_topup": "id public_id account_id kind status amount_micros refunded_micros key"
    " checkout_session_id payment_intent_id grant_id entry_id error created_by_id created_at"
    " completed_at",
    "usage_call": "id call_id account_id status direction connected_at ended_at transferred_at"
    " hold_seconds destination llm billable_seconds allowance_seconds cost_micros"
    " charged_micros uncollected_micros explanation final_hash charged_at ledger_entry_id"
    " refunded_micros refunded_at created_at updated_at",
    "usage_usageevent": "id event_id account_id type occurred_at content_hash provider model"
    " quantity output_tokens start_within standard_price_micros flex_price_micros cost_micros"
    " charged_micros uncollected_micros explanation ledger_entry_id refunded_micros created_at",
    "usage_usagerollup": "account_id day is_line component provider model items quantity"
    " output_tokens allowance_seconds cost_micros savings_micros refunded_micros",
    "billing_unbilledline": "account_id component provider model items quantity amount_micros"
    " savings_micros",
    "usage_usagecarry": "account_id component key units",
    "usage_allowance": "account_id period_start period_end included_seconds rollover_seconds"
    " used_seconds",
}


class Sink:
    """Per-table COPY buffers, written together in one transaction per chunk."""

    def __init__(self, cursor):
        self.cursor = cursor
        self.buffers = {table: io.StringIO() for table in TABLE_COLUMNS}
        self.pending_items = 0
        self.copy_seconds = 0.0

    def add(self, table: str, line: str) -> None:
        self.buffers[table].write(line)

    def flush(self) -> None:
        from django.db import transaction

        started = time.perf_counter()
        with transaction.atomic():
            for table, columns in TABLE_COLUMNS.items():
                buffer = self.buffers[table]
                if buffer.tell():
                    columns = ", ".join(columns.split())
                    with self.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        copy.write(buffer.getvalue())
                    self.buffers[table] = io.StringIO()
        self.pending_items = 0
        self.copy_seconds += time.perf_counter() - started


class AccountRun:
    """One account's items charged in time order, and what charging them leaves.

    `shard` (scripts.scale_items.Shard) hands out ids and holds the sink and the clock.
    """

    def __init__(self, *, shard, account_id: int, public_id: str, plan, item_count: int):
        self.shard = shard
        self.account_id = account_id
        self.public_id = public_id
        self.plan = plan
        self.code = plan.code
        self.card = shard.cards[plan.code]
        self.prepaid = plan.billing_mode == "prepaid"
        self.per_llm = self.card.has_component("llm")  # pay-as-you-go: calls name their LLM
        self.balance = 0
        # Spendable grants in spending order: [grant id, kind, amount, remaining, priority,
        # expires_at, created_at].
        self.grants: list[list] = []
        self.held_lines: list[tuple[str, str]] = []  # credit entries, top-ups: written last
        self.carries: dict[tuple[str, str], int] = {}
        self.changed_carries: set[tuple[str, str]] = set()
        self.allowance_total = plan.included_minutes * 60
        self.allowance_used = 0
        self.rollups: dict[tuple, list[int]] = defaultdict(lambda: [0] * 7)
        self.unbilled: dict[tuple, list[int]] = defaultdict(lambda: [0] * 4)
        self.unbilled_micros = 0
        self.cost_micros = 0
        self.entries = self.topups = 0
        # Top up in steps of about a sixth of the expected usage, at least the plan's minimum.
        expected = item_count * shard.expected_cost[plan.code]
        self.topup_micros = max(
            plan.min_topup_micros, 10 * USD, math.ceil(expected / 6 / (10 * USD)) * 10 * USD
        )
        self.floor_micros = max(plan.low_balance_threshold_micros, 5 * USD)

    def allowance_key(self) -> int:
        """The allowance left as rating sees it: no item uses more than an hour of it."""
        return min(self.allowance_total - self.allowance_used, 3600)

    # Credit (billing.ledger: a positive posting becomes a grant) ---------------------------

    def credit(
        self, *, kind, amount, at, description, priority=0, expires_at=None, key=None, topup=False
    ) -> None:
        shard = self.shard
        grant_id = next(shard.grant_ids)
        entry_id = next(shard.entry_ids)
        self.balance += amount
        self.grants.append([grant_id, kind, amount, amount, priority, expires_at, at])
        # Spending order (L5): earliest expiry first (none last), then highest priority, then
        # oldest; ids grow with time here, so the id stands for the age.
        self.grants.sort(key=lambda g: (g[5] is None, g[5] or "", -g[4], g[0]))
        cause_type, cause_id = None, ""
        if topup:
            topup_id = next(shard.topup_ids)
            public = shard.new_public_id("top")
            cause_type, cause_id = shard.content_types["topup"], topup_id
            description = f"Manual top-up {public}"
            key = f"topup:{topup_id}"
            self.topups += 1
            self.held_lines.append(
                (
                    "billing_topup",
                    f"{topup_id}\t{public}\t{self.account_id}\tmanual\tsucceeded\t{amount}\t0\t"
                    f"scale:{public}\t\\N\t\\N\t{grant_id}\t{entry_id}\t\t\\N\t{at}\t{at}\n",
                )
            )
        self.entries += 1
        self.held_lines.append(
            (
                "billing_ledgerentry",
                copy_line(
                    (
                        *(entry_id, self.account_id, kind, amount, self.balance, at),
                        *(cause_type, cause_id, grant_id, None, "", description, key),
                    )
                ),
            )
        )

    def open(self, *, start, end) -> None:
        """Credit what `billing.plans.onboarding.create_account` grants on the plan."""
        plan = self.plan
        if plan.included_credit_micros:
            self.credit(
                kind="allowance",
                amount=plan.included_credit_micros,
                at=start,
                priority=100,
                expires_at=end,
                description=f"Included credit {start:%Y-%m-%d} to {end:%Y-%m-%d}",
                key=f"allowance:{self.public_id}:{start:%Y%m%d}",
            )
        if plan.signup_credit_micros:
            self.credit(
                kind="signup_credit",
                amount=plan.signup_credit_micros,
                at=start,
                priority=10,
                description=f"Signup credit on {plan.name}",
                key=f"signup:{self.public_id}",
            )

    # Charging (usage.charging.session.ChargeSession.charge and close, one item at a time)
    # ----------

    def charge(
        self,
        *,
        rated,
        kind: str,
        cause_type: int,
        cause_id: int,
        description: str,
        at: str,
        day,
        component: str,
        provider: str,
        model: str,
        output_tokens: int,
    ) -> int | None:
        """Post the item's debit and count it; return the ledger entry's id, if any."""
        cost = rated.cost
        entry_id = None
        if cost:
            if self.prepaid:
                # Topped up before the credit runs low, so every charge is covered in full.
                while self.balance - cost < self.floor_micros:
                    self.credit(
                        kind="topup", amount=self.topup_micros, at=at, description="", topup=True
                    )
                self._spend(cost)
            self.balance -= cost
            entry_id = next(self.shard.entry_ids)
            self.entries += 1
            self.shard.sink.add(
                "billing_ledgerentry",
                f"{entry_id}\t{self.account_id}\t{kind}\t{-cost}\t{self.balance}\t{at}\t"
                f"{cause_type}\t{cause_id}\t\\N\t\\N\t\t{description}\t\\N\n",
            )
        self.cost_micros += cost
        if rated.allowance_seconds:
            self.allowance_used += rated.allowance_seconds
            row = self.unbilled[("allowance", "", "")]
            row[0] += 1
            row[1] += rated.allowance_seconds
        for ident, units in rated.carries:
            if self.carries.get(ident, 0) != units:
                self.carries[ident] = units
                self.changed_carries.add(ident)
        savings = rated.savings
        row = self.rollups[(day, False, component, provider, model)]
        row[0] += 1
        row[1] += rated.quantity
        row[2] += output_tokens
        row[3] += rated.allowance_seconds
        row[4] += cost
        row[5] += savings
        for line_component, key, amount, quantity in rated.lines:
            row = self.rollups[(day, True, line_component, provider, key)]
            row[0] += 1
            row[1] += quantity
            row[4] += amount
            row = self.unbilled[(line_component, provider, key)]
            row[0] += 1
            row[1] += quantity
            row[2] += amount
            row[3] += savings
            self.unbilled_micros += amount
        return entry_id

    def _spend(self, amount: int) -> None:
        for grant in self.grants:
            if not amount:
                return
            take = min(grant[3], amount)
            grant[3] -= take
            amount -= take

    def close(self, *, start, end) -> None:
        """Write what the account keeps: grants, credit entries, rollups, unbilled lines."""
        sink = self.shard.sink
        account = self.account_id
        for grant_id, kind, amount, remaining, priority, expires_at, created_at in self.grants:
            sink.add(
                "billing_creditgrant",
                copy_line(
                    (
                        *(grant_id, account, kind, amount, remaining, priority),
                        *(expires_at, created_at, None),
                    )
                ),
            )
        for table, line in self.held_lines:
            sink.add(table, line)
        for (day, is_line, component, provider, model), v in self.rollups.items():
            sink.add(
                "usage_usagerollup",
                f"{account}\t{day}\t{'t' if is_line else 'f'}\t{component}\t{provider}\t{model}\t"
                f"{v[0]}\t{v[1]}\t{v[2]}\t{v[3]}\t{v[4]}\t{v[5]}\t{v[6]}\n",
            )
        for (component, provider, model), v in self.unbilled.items():
            sink.add(
                "billing_unbilledline",
                f"{account}\t{component}\t{provider}\t{model}\t{v[0]}\t{v[1]}\t{v[2]}\t{v[3]}\n",
            )
        for component, key in sorted(self.changed_carries):
            units = self.carries[(component, key)]
            sink.add("usage_usagecarry", f"{account}\t{component}\t{key}\t{units}\n")
        if self.allowance_total:
            sink.add(
                "usage_allowance",
                f"{account}\t{start}\t{end}\t{self.allowance_total}\t0\t{self.allowance_used}\n",
            )
