"""Charging rated usage to an account while holding its row lock.

A `ChargeSession` is opened inside a transaction for one locked account. It loads what rating
needs once (plan, rate card, carries, the period's allowance), collects the ledger postings and
rollup deltas of every item of the batch, and writes them all in `close()`: one balance update,
one carry upsert, one rollup upsert, one bulk insert of ledger entries.

Prepaid shortfall: usage that already happened is owed even when the balance cannot cover it.
The charge takes what the balance holds and records the rest as `uncollected_micros` on the item,
so a prepaid balance never goes below zero (SPEC L4) and the gap stays visible. Authorization
and reservations (usage.spending.authorize) keep that gap rare.
"""

from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property

from django.db.models import F

from accounts.models import Account
from billing.alerts.allowance import usage_charged
from billing.invoicing.unbilled import UnbilledDeltas
from billing.ledger.locks import LockedAccount
from billing.ledger.posting import Posting, apply_postings, expire_account_credit
from billing.models import Allowance, Subscription
from billing.periods import period_containing
from billing.plans.allowances import (
    allowances_from,
    chain_available_seconds,
    create_period_allowance,
    rollover_chain,
    use_chain,
)
from billing.plans.rates import ModelCatalog, RateCard
from usage.charging.rollups import RollupDeltas
from usage.models import UsageCarry
from usage.rating.rules import Rating, savings_micros
from usage.spending.budgets import budgets_after_usage


@dataclass(frozen=True)
class Charged:
    charged_micros: int
    uncollected_micros: int
    posting: Posting | None


class Pricing:
    """The prices rating reads for one account: its plan, its rate card (read on first use:
    token events need only the model catalog) and the model catalog.

    Read before the account's lock where a report can, to keep the lock short: a plan or rate
    change committed while a report waits for the lock is not seen by it, as if the report had
    arrived a moment earlier.
    """

    def __init__(
        self,
        *,
        subscription: Subscription,
        catalog: ModelCatalog | None = None,
        card: RateCard | None = None,
    ):
        self.subscription = subscription
        self.plan = subscription.plan
        self._card = card
        self._catalog = catalog

    @property
    def card(self) -> RateCard:
        if self._card is None:
            self._card = RateCard(plan=self.plan, account=self.subscription.account)
        return self._card

    @property
    def catalog(self) -> ModelCatalog:
        if self._catalog is None:
            self._catalog = ModelCatalog()
        return self._catalog


class ChargeSession:
    def __init__(self, *, locked: LockedAccount, now: datetime, pricing: Pricing):
        """Charge usage to a locked account; rating state (carries, allowance) is read under
        the lock, prices may have been read before it."""
        self.locked = locked
        self.account = locked.account
        self.now = now
        self.pricing = pricing
        self.subscription = pricing.subscription
        self.plan = pricing.plan
        self._carries: dict[tuple[str, str], int] | None = None
        self._changed_carries: set[tuple[str, str]] = set()
        self._allowance: Allowance | None = None
        self._allowance_used = 0
        # The rows the last item rated against when its period is not the session's latest
        # (a late item), written at once; and the start of that item's period.
        self._late_chain: list[Allowance] | None = None
        self._allowance_period_start: datetime | None = None
        self.postings: list[Posting] = []
        self.rollups = RollupDeltas()
        self.unbilled = UnbilledDeltas()
        self._pending_debit = 0

    @property
    def card(self) -> RateCard:
        return self.pricing.card

    @property
    def catalog(self) -> ModelCatalog:
        return self.pricing.catalog

    # Carries (U4, U5) --------------------------------------------------------------------

    @property
    def carries(self) -> dict[tuple[str, str], int]:
        if self._carries is None:
            self._carries = {
                (c.component, c.key): c.units
                for c in UsageCarry.objects.filter(account=self.account)
            }
        return self._carries

    def set_carries(self, carries: dict[tuple[str, str], int]) -> None:
        for ident, units in carries.items():
            if self.carries.get(ident, 0) != units:
                self.carries[ident] = units
                self._changed_carries.add(ident)

    # Allowance (U9) ----------------------------------------------------------------------

    @property
    def allowance(self) -> Allowance | None:
        """The allowance of the latest period items of this session used (the one `close()`
        writes and alerts on)."""
        return self._allowance

    def allowance_remaining_seconds(self, *, at: datetime) -> int:
        """Return what is left of the allowance of the period `at` (the item's time) is in,
        for the item rated next (its `charge` uses what it covers).

        An item uses its own period's included minutes, not those of the period it is
        reported in (items may come 35 days late, U10), also once that period is settled:
        then it takes back what rolled over from it, as far as later periods have not used
        it (billing.plans.allowances, "Late usage of a settled period").
        """
        start, _ = period_containing(anchor_day=self.subscription.anchor_day, moment=at)
        self._late_chain = None
        self._allowance_period_start = start
        if self._allowance is not None and self._allowance.period_start == start:
            return self._allowance.remaining_seconds - self._allowance_used
        # Another period: write what the batch used of the one before switching, so that the
        # rows read below (and a next period's rollover made from them) see it.
        self._write_allowance_used()
        rows = allowances_from(account=self.account, period_start=start)
        chain = rollover_chain(rows, period_start=start)
        if len(chain) > 1:
            # A settled period: its row is written at once, with what it passes on.
            if self._allowance is not None:
                chain = [self._allowance if r.pk == self._allowance.pk else r for r in chain]
            self._late_chain = chain
            return chain_available_seconds(chain)
        if chain:
            allowance = chain[0]
        elif rows or start < self.subscription.current_period_start:
            # A past period without a row had no included minutes to use (period close and
            # every plan change make the row of a period with them); one that a later period's
            # row follows is settled: that row took over all of them, or let them expire.
            return 0
        else:
            allowance = create_period_allowance(
                account=self.account, subscription=self.subscription, now=at
            )
            if allowance is None:
                return 0
        if self._allowance is None or allowance.period_start >= self._allowance.period_start:
            self._allowance = allowance
            return allowance.remaining_seconds
        # An older period than the session's latest, not settled: rated against its own row,
        # written at once so that the latest stays the one `close()` writes and alerts on.
        self._late_chain = [allowance]
        return allowance.remaining_seconds

    def _write_allowance_used(self) -> None:
        if self._allowance_used:
            Allowance.objects.filter(pk=self._allowance.pk).update(
                used_seconds=self._allowance.used_seconds + self._allowance_used
            )
            self._allowance.used_seconds += self._allowance_used
            self._allowance_used = 0

    def use_allowance(self, seconds: int) -> None:
        """Use `seconds` of the allowance the last `allowance_remaining_seconds` read."""
        if self._late_chain is not None:
            use_chain(self._late_chain, seconds=seconds)
        else:
            self._allowance_used += seconds

    # Charges -----------------------------------------------------------------------------

    @cached_property
    def _expired_micros(self) -> int:
        """Credit past its expiry that the expiry job has not written off yet."""
        return self.locked.grants.expired_micros(now=self.now)

    def spendable_micros(self) -> int:
        """What the balance can still pay in this session (prepaid), ignoring holds.

        Expired credit is not spendable even while it is still in the cached balance: posting
        the debit writes it off first (billing.ledger), so counting it here would make that
        debit overdraw the prepaid balance and fail instead of recording the shortfall.
        """
        return self.account.balance_micros - self._expired_micros - self._pending_debit

    def charge(
        self,
        *,
        rating: Rating,
        kind: str,
        cause,
        description: str,
        day: date,
        component: str,
        provider: str = "",
        model: str = "",
        output_tokens: int = 0,
    ) -> Charged:
        """Queue the debit of a rated item and its rollups; return what was (not) charged."""
        cost = rating.cost_micros
        if self.account.is_prepaid:
            charged = max(min(cost, self.spendable_micros()), 0)
        else:
            charged = cost
        self._pending_debit += charged
        self.use_allowance(rating.allowance_seconds)
        self.set_carries(rating.carries)
        posting = None
        if charged:
            posting = Posting(
                amount_micros=-charged, kind=kind, cause=cause, description=description
            )
            self.postings.append(posting)
        self._count(rating, cost - charged, day, component, provider, model, output_tokens)
        return Charged(charged_micros=charged, uncollected_micros=cost - charged, posting=posting)

    def _count(self, rating, uncollected, day, component, provider, model, output_tokens):
        account_id = self.account.pk
        savings = savings_micros(rating)
        self.rollups.add(
            account_id=account_id,
            day=day,
            component=component,
            provider=provider,
            model=model,
            items=1,
            quantity=rating.billable_quantity,
            output_tokens=output_tokens,
            allowance_seconds=rating.allowance_seconds,
            cost_micros=rating.cost_micros,
            savings_micros=savings,
        )
        for line in rating.lines:
            self.rollups.add(
                account_id=account_id,
                day=day,
                component=line.component,
                is_line=True,
                provider=provider,
                model=line.key,
                items=1,
                quantity=line.base_quantity,
                cost_micros=line.amount_micros,
            )
            self.unbilled.add(
                account_id=account_id,
                component=line.component,
                provider=provider,
                model=line.key,
                items=1,
                quantity=line.base_quantity,
                amount_micros=line.amount_micros,
                savings_micros=savings,
            )
        if rating.allowance_seconds:
            # The included part of a late item is stated on the invoice that bills its period's
            # late usage, naming the period whose minutes it used.
            period = self._allowance_period_start
            late = period is not None and period < self.subscription.current_period_start
            self.unbilled.add(
                account_id=account_id,
                component="allowance",
                model=f"{period:%Y-%m-%d}" if late else "",
                items=1,
                quantity=rating.allowance_seconds,
            )
        if uncollected:
            self.unbilled.add(
                account_id=account_id, component="uncollected", items=1, amount_micros=-uncollected
            )

    def close(self, *, merge: bool = True) -> None:
        """Write carries, allowance, rollups and ledger entries; call once, still locked.

        `merge`: one ledger entry per kind for the whole session (merge_postings); else one
        per charged item, as call reports charged together have (usage.ingest.calls).
        """
        if self._changed_carries:
            for component, key in sorted(self._changed_carries):
                UsageCarry.objects.update_or_create(
                    account=self.account,
                    component=component,
                    key=key,
                    defaults={"units": self.carries[(component, key)]},
                )
        self._write_allowance_used()
        if not self.account.is_prepaid:
            # Postpaid usage is paid by any credit grants first (billing.ledger); that part
            # is not owed on the invoice. Only credit still valid now pays: posting the debit
            # writes off credit past its expiry first, even before the expiry job has run,
            # and the usage it would have paid becomes debt that must be invoiced.
            credit = max(self.account.balance_micros, 0)
            if credit:  # a balance at or below zero holds no grant: no query
                credit = max(credit - self._expired_micros, 0)
            covered = min(self._pending_debit, credit)
            if covered:
                self.unbilled.add(
                    account_id=self.account.pk, component="credits_applied", amount_micros=-covered
                )
        self.rollups.write()
        unbilled = self.unbilled.total_micros()
        self.unbilled.write()
        if self.postings:
            if merge:
                merged, merged_of = merge_postings(self.postings)
            else:
                merged, merged_of = self.postings, self.postings
            # The unbilled total changes in the same statement as the balance.
            apply_postings(
                locked=self.locked,
                postings=merged,
                now=self.now,
                unbilled_delta_micros=unbilled,
            )
            for posting, into in zip(self.postings, merged_of, strict=True):
                posting.entry = into.entry
        else:
            if unbilled:
                Account.objects.filter(pk=self.account.pk).update(
                    unbilled_micros=F("unbilled_micros") + unbilled
                )
                self.account.unbilled_micros += unbilled
            if self._expired_micros:
                # A debit writes off credit past its expiry before it spends (billing.ledger),
                # but nothing was debited: the expired credit left nothing to charge. Write it
                # off now, or every later charge would find it again and collect nothing (L5).
                expire_account_credit(locked=self.locked, now=self.now)
        alert_settings = usage_charged(
            locked=self.locked,
            subscription=self.subscription,
            allowance=self._allowance,
            charged_micros=self._pending_debit,
            now=self.now,
        )
        if alert_settings.has_budgets:
            budgets_after_usage(locked=self.locked, subscription=self.subscription, now=self.now)
        self._pending_debit = 0


def merge_postings(postings: list[Posting]) -> tuple[list[Posting], list[Posting]]:
    """Return one posting per kind for the usage items of a batch, in order of first use, and
    for each of `postings` the merged posting that took it in.

    A batch of 100 requests is one ledger entry of their total, not 100 entries: the ledger
    explains the balance, and each item keeps its own cost, explanation and a link to the entry
    (U11). A kind with a single item keeps that item's posting, and so its cause link.
    """
    groups: dict[str, list[Posting]] = {}
    for posting in postings:
        groups.setdefault(posting.kind, []).append(posting)
    merged_of_kind: dict[str, Posting] = {}
    for kind, group in groups.items():
        if len(group) == 1:
            merged_of_kind[kind] = group[0]
            continue
        first, last = group[0].description, group[-1].description
        merged_of_kind[kind] = Posting(
            amount_micros=sum(p.amount_micros for p in group),
            kind=kind,
            description=f"{len(group)} items: {first} ... {last}",
        )
    return list(merged_of_kind.values()), [merged_of_kind[p.kind] for p in postings]
