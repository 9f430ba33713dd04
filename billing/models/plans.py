"""Plans, effective-dated rates and the model price catalog (SPEC S1, U3, U7)."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, BillingMode, RateTier

# Rates are exact decimals of USD per unit; 10 decimals holds 0.08/60 per second exactly enough
# for any per-minute price while the cost itself is rounded once (billing.money.round_micros).
RATE_FIELD = {"max_digits": 20, "decimal_places": 10}


class Rounding(models.TextChoices):
    NEAREST = "nearest", "To the nearest second"
    UP = "up", "Up to the next second"


class FeePayment(models.TextChoices):
    """How a prepaid account pays its plan fee (a postpaid one: on the period's invoice)."""

    CARD = "card", "Saved card"
    CREDIT = "credit", "From credit"


class Plan(models.Model):
    """What an account is billed by. Editing a plan never changes past charges: every charge
    stores the rate it used, and prices change through new effective-dated `Rate` rows."""

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    billing_mode = models.CharField(max_length=8, choices=BillingMode.choices)
    # No customer action may create spendable value except the signup credit of a new
    # customer's own plan and what is paid for (docs/billing-rules.md): staff decide which
    # plans customers may choose themselves. Sales-led plans (voice-enterprise) are neither.
    selectable_at_signup = models.BooleanField(
        default=False, help_text="Customers may choose it when they sign up."
    )
    selectable_for_subaccount = models.BooleanField(
        default=False,
        help_text="Customers may choose it for a subaccount they open (its included minutes "
        "or credit wait for staff approval or a paid plan fee).",
    )

    # Self-serve plan changes (F2, billing.plans.changes): the plans a customer may move to
    # from the Billing page, within their billing mode. A plan with included allowance should
    # carry a fee (PlanFee) before it is open here: no customer action creates value.
    selectable_for_change = models.BooleanField(
        default=False, help_text="Customers may move to it from the Billing page."
    )
    downgrades_at_once = models.BooleanField(
        default=False,
        help_text="A customer's move down to this plan takes effect at once, not at the next "
        "period.",
    )
    # Plan fee (F1): the amounts are effective-dated PlanFee rows; this says how prepaid
    # accounts pay them (postpaid: the first line of the period's invoice).
    fee_payment = models.CharField(
        max_length=8, choices=FeePayment.choices, default=FeePayment.CARD
    )

    # Calls (U1-U4)
    rounding = models.CharField(max_length=8, choices=Rounding.choices, default=Rounding.NEAREST)
    minute_aggregation = models.BooleanField(
        default=False, help_text="Accumulate seconds across calls; bill each whole minute."
    )
    unanswered_flat_seconds = models.PositiveIntegerField(
        default=0, help_text="Seconds billed for no_answer and hangup_on_voicemail calls."
    )
    outbound_calls_free = models.BooleanField(default=False)
    # Chat (U5): N AI messages make one billable minute; empty means chat is not billed.
    chat_messages_per_minute = models.PositiveIntegerField(null=True, blank=True)

    # Allowance (U9): included minutes or included credit per period.
    included_minutes = models.PositiveIntegerField(default=0)
    included_credit_micros = models.BigIntegerField(default=0)
    rollover_available = models.BooleanField(
        default=False, help_text="Accounts on this plan may have rollover of unused allowance."
    )

    # Credit and payments (P1, P2, L5)
    min_topup_micros = models.BigIntegerField(default=0)
    signup_credit_micros = models.BigIntegerField(default=0)
    signup_credit_expiry_days = models.PositiveIntegerField(null=True, blank=True)
    auto_topup_allowed = models.BooleanField(default=False)

    # Alerts (N1)
    low_balance_threshold_micros = models.BigIntegerField(default=0)
    zero_balance_alert = models.BooleanField(default=True)

    # Postpaid invoicing (I2, I4)
    billing_threshold_micros = models.BigIntegerField(null=True, blank=True)
    minimum_charge_micros = models.BigIntegerField(default=0)

    # Commission on savings (U8)
    commission_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    commission_excluded_providers = models.CharField(
        max_length=200, blank=True, help_text="Comma-separated provider names, e.g. anthropic."
    )

    # Gateway (G2)
    default_rate_tier = models.CharField(
        max_length=8, choices=RateTier.choices, default=RateTier.FREE
    )
    rate_limits = models.JSONField(
        default=dict, blank=True, help_text='Requests per minute by tier, e.g. {"free": 10}.'
    )

    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(min_topup_micros__gte=0)
                & Q(signup_credit_micros__gte=0)
                & Q(included_credit_micros__gte=0)
                & Q(minimum_charge_micros__gte=0)
                & Q(low_balance_threshold_micros__gte=0),
                name="plan_amounts_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(commission_percent__isnull=True)
                | (Q(commission_percent__gte=0) & Q(commission_percent__lte=100)),
                name="plan_commission_is_a_percentage",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.code})"

    @property
    def excluded_providers(self) -> frozenset[str]:
        return frozenset(
            p.strip().lower() for p in self.commission_excluded_providers.split(",") if p.strip()
        )


class RateComponent(models.TextChoices):
    CALL = "call", "Call minute (flat rate)"
    LLM = "llm", "Call minute per LLM"
    VOICE_ENGINE = "voice_engine", "Voice engine minute"
    DESTINATION = "destination", "Call minute per destination prefix"
    CHAT = "chat", "Chat minute"
    SMS = "sms", "SMS message"


class Rate(models.Model):
    """A price in USD per unit (minute, or message for SMS), from a moment on.

    Belongs to a plan, or to one account as a custom rate that wins over the plan's (U3).
    `key` names the LLM or the destination prefix; it is empty for the other components.
    """

    plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.CASCADE, related_name="rates"
    )
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="custom_rates"
    )
    component = models.CharField(max_length=16, choices=RateComponent.choices)
    key = models.CharField(max_length=100, blank=True, default="")
    price = models.DecimalField(**RATE_FIELD, help_text="USD per minute (per message for SMS).")
    effective_from = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["plan", "component", "key", "effective_from"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(plan__isnull=False, account__isnull=True)
                | Q(plan__isnull=True, account__isnull=False),
                name="rate_belongs_to_plan_or_account",
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="rate_price_not_negative"),
            models.UniqueConstraint(
                fields=["plan", "component", "key", "effective_from"],
                condition=Q(plan__isnull=False),
                name="one_plan_rate_per_moment",
            ),
            models.UniqueConstraint(
                fields=["account", "component", "key", "effective_from"],
                condition=Q(account__isnull=False),
                name="one_account_rate_per_moment",
            ),
        ]

    def __str__(self):
        owner = self.plan.code if self.plan_id else f"account {self.account_id}"
        key = f" {self.key}" if self.key else ""
        return f"{owner} {self.component}{key}: {self.price} from {self.effective_from:%Y-%m-%d}"


class ModelKind(models.TextChoices):
    TEXT = "text", "Text / chat / reasoning"
    EMBEDDING = "embedding", "Embeddings"


class ModelPrice(models.Model):
    """Catalog price of an LLM in USD per million tokens, from a moment on (U7)."""

    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=ModelKind.choices, default=ModelKind.TEXT)
    input_per_million = models.DecimalField(**RATE_FIELD)
    output_per_million = models.DecimalField(**RATE_FIELD, default=0)
    effective_from = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["model", "effective_from"])]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from"], name="one_model_price_per_moment"
            ),
            models.CheckConstraint(
                condition=Q(input_per_million__gte=0) & Q(output_per_million__gte=0),
                name="model_price_not_negative",
            ),
        ]

    def __str__(self):
        return f"{self.provider}/{self.model} from {self.effective_from:%Y-%m-%d}"
