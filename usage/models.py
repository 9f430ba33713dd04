"""Metered usage, its rating, and what rating carries between items (SPEC U1-U11, G3)."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, ApiKey
from billing.models import LedgerEntry


class CallStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", "In progress"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    TRANSFERRED = "transferred", "Transferred"
    NO_ANSWER = "no_answer", "No answer"
    HANGUP_ON_VOICEMAIL = "hangup_on_voicemail", "Hung up on voicemail"
    FAILED = "failed", "Failed"
    SPAM = "spam", "Spam"


FINAL_CALL_STATUSES = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.TRANSFERRED,
        CallStatus.NO_ANSWER,
        CallStatus.HANGUP_ON_VOICEMAIL,
        CallStatus.FAILED,
        CallStatus.SPAM,
    }
)


class Direction(models.TextChoices):
    INBOUND = "inbound", "Inbound"
    OUTBOUND = "outbound", "Outbound"


class Call(models.Model):
    """A call reported by the platform; charged once, when it first reaches a final state (U2)."""

    call_id = models.CharField(max_length=100, unique=True, help_text="The operator's id.")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="calls")
    status = models.CharField(max_length=20, choices=CallStatus.choices)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    connected_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    transferred_at = models.DateTimeField(null=True, blank=True)
    hold_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    destination = models.CharField(max_length=32, blank=True)
    llm = models.CharField(max_length=100, blank=True)
    # Rating, filled when the call is final.
    billable_seconds = models.PositiveIntegerField(default=0)
    allowance_seconds = models.PositiveIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0, help_text="Rated cost.")
    charged_micros = models.BigIntegerField(default=0, help_text="Taken from the balance.")
    uncollected_micros = models.BigIntegerField(
        default=0, help_text="Rated cost a prepaid balance could not cover."
    )
    explanation = models.JSONField(default=dict, blank=True)
    final_hash = models.CharField(max_length=64, blank=True)
    charged_at = models.DateTimeField(null=True, blank=True)
    ledger_entry = models.ForeignKey(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    refunded_micros = models.BigIntegerField(default=0)
    refunded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(refunded_micros__gte=0)
                & Q(refunded_micros__lte=models.F("charged_micros")),
                name="call_refund_within_charge",
            ),
        ]

    def __str__(self):
        return f"call {self.call_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_CALL_STATUSES


class EventType(models.TextChoices):
    CHAT = "chat", "Chat messages"
    SMS = "sms", "SMS"
    LLM = "llm", "LLM request"
    EMBEDDING = "embedding", "Embedding request"


class UsageEvent(models.Model):
    """A rated usage event; `event_id` is the operator's id and claims idempotency (U10)."""

    event_id = models.CharField(max_length=100, unique=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="usage_events")
    type = models.CharField(max_length=10, choices=EventType.choices)
    occurred_at = models.DateTimeField()
    content_hash = models.CharField(max_length=64)
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=100, blank=True)
    quantity = models.BigIntegerField(
        default=0, help_text="Messages, SMS count, or input tokens for LLM and embeddings."
    )
    output_tokens = models.BigIntegerField(default=0)
    start_within = models.CharField(max_length=32, blank=True)
    standard_price_micros = models.BigIntegerField(null=True, blank=True)
    flex_price_micros = models.BigIntegerField(null=True, blank=True)
    cost_micros = models.BigIntegerField(default=0)
    charged_micros = models.BigIntegerField(default=0)
    uncollected_micros = models.BigIntegerField(default=0)
    explanation = models.JSONField(default=dict, blank=True)
    ledger_entry = models.ForeignKey(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    refunded_micros = models.BigIntegerField(default=0)
    refunded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["account", "-occurred_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(refunded_micros__gte=0)
                & Q(refunded_micros__lte=models.F("charged_micros")),
                name="event_refund_within_charge",
            ),
        ]

    def __str__(self):
        return f"{self.type} event {self.event_id}"


class UsageCarry(models.Model):
    """What rating carries from one item to the next, per account and rate component.

    Seconds not yet making a whole minute under minute aggregation (U4), chat messages not yet
    making a billable minute (U5). Changed only under the account's row lock.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="carries")
    component = models.CharField(max_length=16)
    key = models.CharField(max_length=100, blank=True, default="")
    units = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "component", "key"], name="one_carry_per_component"
            ),
            models.CheckConstraint(condition=Q(units__gte=0), name="carry_not_negative"),
        ]

    def __str__(self):
        return f"{self.component} {self.key} carry {self.units}"


class ReservationStatus(models.TextChoices):
    HELD = "held", "Held"
    SETTLED = "settled", "Settled"
    RELEASED = "released", "Released"


class Reservation(models.Model):
    """Credit held by an authorized call until its final report or expiry (G3).

    `Account.held_micros` is the sum of HELD reservations, kept under the account lock.
    """

    public_id = models.CharField(max_length=32, unique=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="reservations")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    call_id = models.CharField(max_length=100, blank=True)
    amount_micros = models.BigIntegerField()
    max_seconds = models.PositiveIntegerField()
    # Of max_seconds, the included seconds (U9) promised to this call: no other call may be
    # promised them while the hold is open. The rest is paid for by amount_micros.
    allowance_seconds = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=8, choices=ReservationStatus.choices, default=ReservationStatus.HELD
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="held"), name="held_expiring"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "call_id"],
                condition=Q(status="held") & ~Q(call_id=""),
                name="one_hold_per_call",
            ),
            models.CheckConstraint(condition=Q(amount_micros__gte=0), name="hold_not_negative"),
        ]

    def __str__(self):
        return f"hold {self.public_id} {self.amount_micros} ({self.status})"


class UsageRollup(models.Model):
    """Daily totals per account, component, provider and model; dashboards and invoices read
    these, never raw items. Maintained in the same transaction as the rating."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="rollups")
    day = models.DateField()
    # Item rows (is_line false) count calls, messages, requests: component is call, chat, sms,
    # llm, embedding or flex. Line rows price them: component is a rate component
    # (call, llm, voice_engine, destination, chat, sms, input_tokens, output_tokens, commission).
    is_line = models.BooleanField(default=False)
    component = models.CharField(max_length=16)
    provider = models.CharField(max_length=50, blank=True, default="")
    model = models.CharField(max_length=100, blank=True, default="")
    items = models.BigIntegerField(default=0)
    quantity = models.BigIntegerField(
        default=0, help_text="Billable seconds, messages, SMS, requests or input tokens."
    )
    output_tokens = models.BigIntegerField(default=0)
    allowance_seconds = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    savings_micros = models.BigIntegerField(default=0)
    refunded_micros = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "day", "is_line", "component", "provider", "model"],
                name="one_rollup_per_day_and_component",
            ),
        ]
        indexes = [models.Index(fields=["account", "day"])]

    def __str__(self):
        return f"{self.day} {self.component} {self.provider}/{self.model}"


class RateLimitCounter(models.Model):
    """Requests of one API key in one window, for the database-backed rate limiter (G2)."""

    key_id = models.CharField(max_length=32)
    window = models.BigIntegerField(help_text="Unix minute.")
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key_id", "window"], name="one_counter_per_window"),
        ]

    def __str__(self):
        return f"{self.key_id} @ {self.window}: {self.count}"


class IdempotentRequest(models.Model):
    """A POST sent with an `Idempotency-Key` header, and its first answer (SPEC X2).

    The unique (scope, key) row is the claim: inserted before the work, so of two requests
    with one key only one does it. Kept at least IDEMPOTENCY_RETENTION (usage.api.idempotency).
    """

    # The API key's id: two callers never share a key's answers.
    scope = models.CharField(max_length=32)
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path and body: the same key with another request is a 409.
    request_hash = models.CharField(max_length=64)
    # None while the first request is in flight.
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.BinaryField(default=b"")
    content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "key"], name="one_request_per_idempotency_key"
            ),
        ]

    def __str__(self):
        return f"{self.scope}/{self.key}: {self.status}"


class PendingCharge(models.Model):
    """A report left for whoever holds its account's charge turn (usage.charging.combining).

    PostgreSQL only. A row lives for milliseconds: the holder charges it and writes its
    `outcome` in the same transaction, the report that left it reads that and deletes the row.
    """

    # No foreign key: the row is written while other reports hold the account's row lock,
    # and a key's check would wait for that lock.
    account_id = models.BigIntegerField()
    report = models.JSONField(help_text="The report, as the code that charges it reads it.")
    # 0 while pending; then what the charging code answered (usage.charging.combining.Answer).
    outcome = models.PositiveSmallIntegerField(default=0)
    value = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(
                fields=["account_id", "id"], condition=Q(outcome=0), name="pending_charge_open"
            )
        ]

    def __str__(self):
        return f"pending charge {self.pk} of account {self.account_id}"
