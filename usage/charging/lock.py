"""Lock an account to charge usage to it, and read right after what the charge needs.

WARNING (locking): the account's row lock is the bottleneck of one busy account. Every report of
it waits for the lock, so each statement run while the lock is held costs every waiting report,
and one call report ran fifteen of them. One statement right after the lock therefore reads what
the charge used to read one query at a time:
- the spendable credit grants, the lock's grant book (billing.ledger.grants), from which the
  expired credit not yet written off also follows;
- the alert settings with the plan's defaults, and the auto-top-up settings: what the balance
  watchers would otherwise read (billing.ledger.locks.BalanceWatch);
- whether any call holds credit (usage.spending.holds.settle_hold is skipped when none does).
Each of these changes only under the same lock. All of it is returned as a value, `ChargeLock`,
that the charge passes on as a parameter.

WARNING (PostgreSQL, READ COMMITTED): they are NOT read in the locking statement itself. A
SELECT ... FOR UPDATE that waited for the lock returns the newest version of the locked row but
the other rows of its join as they were when the statement began, before the previous holder
committed: stale grants, stale alert state. The second statement takes a new snapshot after the
lock is granted. (Twenty concurrent call reports showed ledger drift when they were one.)

Rows are read with raw SQL and turned into model instances the way the ORM does
(billing.db.raw_rows): compiling these queries through the ORM cost more than PostgreSQL's work.
"""

from dataclasses import dataclass
from functools import cache

from django.db import connection

from accounts.models import Account
from billing.db.raw_rows import Columns
from billing.ledger.grants import GrantBook
from billing.ledger.locks import BalanceWatch, LockedAccount
from billing.models import AlertSettings, AutoTopUpSettings, CreditGrant, Plan, Subscription
from usage.models import Reservation, ReservationStatus

_ACCOUNT = Columns(Account, "a")
_ALERTS = Columns(AlertSettings, "al")
_AUTO_TOPUP = Columns(AutoTopUpSettings, "t")
_GRANT = Columns(CreditGrant, "g")


@dataclass(frozen=True)
class ChargeLock:
    """An account locked to charge usage to it, with what was read right after the lock."""

    locked: LockedAccount
    # Whether any call holds credit or included seconds (usage.spending.holds): a report that
    # settles no hold skips looking for one.
    has_open_holds: bool


@cache
def _lock_sql(lock_clause: str) -> str:
    return f"SELECT {_ACCOUNT.sql} FROM {Account._meta.db_table} a WHERE a.id = %s {lock_clause}"  # noqa: S608  # nosec B608 - model names


@cache
def _state_sql() -> str:
    t = {
        model: model._meta.db_table
        for model in (Account, Subscription, Plan, AlertSettings, AutoTopUpSettings, CreditGrant)
    }
    return (
        f"SELECT {_ALERTS.sql}, {_AUTO_TOPUP.sql}, {_GRANT.sql}, "  # noqa: S608  # nosec B608 - model names
        "p.low_balance_threshold_micros, p.zero_balance_alert, "
        f"EXISTS (SELECT 1 FROM {Reservation._meta.db_table} r "
        "WHERE r.account_id = a.id AND r.status = %s) "
        f"FROM {t[Account]} a "
        f"LEFT JOIN {t[Subscription]} s ON s.account_id = a.id "
        f"LEFT JOIN {t[Plan]} p ON p.id = s.plan_id "
        f"LEFT JOIN {t[AlertSettings]} al ON al.account_id = a.id "
        f"LEFT JOIN {t[AutoTopUpSettings]} t ON t.account_id = a.id "
        # One row per spendable grant (the grant_spendable index), none: one row of NULLs.
        f"LEFT JOIN {t[CreditGrant]} g ON g.account_id = a.id AND g.remaining_micros > 0 "
        "WHERE a.id = %s"
    )


def lock_for_charge(account_id: int) -> ChargeLock:
    """Lock the account (as billing.ledger.locks.lock_account does) and read what a usage
    charge needs under the lock; call inside transaction.atomic().

    Raise Account.DoesNotExist for an unknown id.
    """
    lock_clause = "FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(_lock_sql(lock_clause), [account_id])
        row = cursor.fetchone()
        if row is None:
            raise Account.DoesNotExist(f"No account {account_id}.")
        # A new statement, so a new snapshot: taken once the lock is ours (see above).
        cursor.execute(_state_sql(), [ReservationStatus.HELD, account_id])
        rows = cursor.fetchall()
    account = _ACCOUNT.build(row)
    spans = _ALERTS.spans(_AUTO_TOPUP, _GRANT)
    first = rows[0]
    alerts = _ALERTS.build_or_none(first[spans[0]])
    if alerts is not None:
        AlertSettings.account.field.set_cached_value(alerts, account)
    auto_topup = _AUTO_TOPUP.build_or_none(first[spans[1]])
    if auto_topup is not None:
        AutoTopUpSettings.account.field.set_cached_value(auto_topup, account)
    grants = [g for g in (_GRANT.build_or_none(row[spans[2]]) for row in rows) if g is not None]
    for grant in grants:
        CreditGrant.account.field.set_cached_value(grant, account)
    watch = BalanceWatch(
        alert_settings=alerts,
        auto_topup=auto_topup,
        plan_low_balance_threshold_micros=first[-3] or 0,
        plan_zero_balance_alert=bool(first[-2]),
    )
    return ChargeLock(
        locked=LockedAccount(
            account=account, grants=GrantBook(account=account, grants=grants), watch=watch
        ),
        has_open_holds=bool(first[-1]),
    )
