"""Saved cards an account can be charged off-session with (SPEC P2, P5)."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account


class TestCardBehaviour(models.TextChoices):
    """How a test-mode card answers a charge (no Stripe keys, SPEC P6)."""

    SUCCEED = "succeed", "Always succeeds"
    DECLINE = "decline", "Declined"
    REQUIRE_ACTION = "require_action", "Needs authentication"


class PaymentMethod(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="payment_methods")
    gateway_id = models.CharField(max_length=255, unique=True, help_text="pm_... or test_...")
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    test_behaviour = models.CharField(
        max_length=16, choices=TestCardBehaviour.choices, blank=True, default=""
    )
    created_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(is_default=True, removed_at__isnull=True),
                name="one_default_card_per_account",
            ),
        ]

    def __str__(self):
        return f"{self.brand or 'card'} ending {self.last4}"
