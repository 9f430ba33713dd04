"""Users, billing accounts, memberships and API keys (SPEC A1-A4)."""

import secrets

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import Q
from django.utils import timezone


def new_public_id(prefix: str) -> str:
    """Return an unguessable public id such as `acc_3f9k...`; database ids stay inside."""
    return f"{prefix}_{secrets.token_hex(8)}"


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields["is_staff"] = True
        extra_fields["is_superuser"] = True
        return self._create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in with an email address; there is no username (SPEC A1)."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self):
        return self.email


class BillingMode(models.TextChoices):
    PREPAID = "prepaid", "Prepaid"
    POSTPAID = "postpaid", "Postpaid"


class Account(models.Model):
    """The billing customer. Its balance is a cache of its ledger (SPEC L3).

    `balance_micros` is only ever changed by `billing.ledger` under a row lock, in the same
    transaction that inserts the ledger entry that explains the change.
    """

    public_id = models.CharField(max_length=32, unique=True, editable=False)
    # The operator's own id for this customer (their platform's user or workspace id), so the
    # platform can report usage and manage the customer without storing Meterline's ids.
    # Unique among the accounts that have one; null, not "", for the many that do not.
    external_id = models.CharField(max_length=255, null=True, blank=True, editable=False)
    # A small string-to-string map the operator keeps with the customer (API `metadata`).
    metadata = models.JSONField(default=dict, blank=True)
    name = models.CharField(max_length=200)
    email = models.EmailField(help_text="Primary billing contact.")
    extra_billing_emails = models.TextField(
        blank=True, help_text="More billing contacts, one address per line."
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    billing_mode = models.CharField(max_length=8, choices=BillingMode.choices)
    balance_micros = models.BigIntegerField(default=0, editable=False)
    # Credit held by authorized calls that have not reported yet (SPEC G3); sum of HELD
    # reservations, changed under the same row lock as the balance.
    held_micros = models.BigIntegerField(default=0, editable=False)
    # Charged since the last invoice or statement: the sum of billing.UnbilledLine, kept
    # beside the balance so the threshold sweep (SPEC I2) is one indexed query.
    unbilled_micros = models.BigIntegerField(default=0, editable=False)
    # Set by dunning when a postpaid invoice cannot be collected (SPEC P5).
    past_due_since = models.DateTimeField(null=True, blank=True, editable=False)
    stripe_customer_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["parent"]), models.Index(fields=["name"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(parent=models.F("id")), name="account_not_its_own_parent"
            ),
            models.UniqueConstraint(
                fields=["external_id"],
                condition=Q(external_id__isnull=False),
                name="account_external_id_unique",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.public_id})"

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = new_public_id("acc")
        super().save(*args, **kwargs)

    @property
    def is_prepaid(self) -> bool:
        return self.billing_mode == BillingMode.PREPAID

    @property
    def billing_emails(self) -> list[str]:
        extra = [line.strip() for line in self.extra_billing_emails.splitlines() if line.strip()]
        return [self.email, *[e for e in extra if e != self.email]]


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    BILLING = "billing", "Billing"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "account"], name="one_membership_per_user"),
        ]

    def __str__(self):
        return f"{self.user} is {self.role} of {self.account}"


class KeyKind(models.TextChoices):
    CUSTOMER = "customer", "Customer key"
    PLATFORM = "platform", "Platform key"


class RateTier(models.TextChoices):
    FREE = "free", "Free"
    ELEVATED = "elevated", "Elevated"
    PAID = "paid", "Paid"


class ApiKey(models.Model):
    """An API credential shown once as `KEY_ID:KEY_SECRET`; only a hash of the secret is kept.

    Customer keys belong to an account; platform keys (account empty) are the operator's and may
    report usage for any account (SPEC A4).
    """

    key_id = models.CharField(max_length=32, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    kind = models.CharField(max_length=8, choices=KeyKind.choices)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    tier = models.CharField(max_length=8, choices=RateTier.choices, default=RateTier.FREE)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="customer") & Q(account__isnull=False))
                | (Q(kind="platform") & Q(account__isnull=True)),
                name="apikey_kind_matches_account",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.key_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Invitation(models.Model):
    """An invitation to join an account with a role (SPEC A2, D4).

    The link carries a random token; only its SHA-256 is kept, as for API keys. Accepting it
    creates the membership and closes the invitation.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "email"],
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="one_open_invitation_per_email",
            ),
        ]

    def __str__(self):
        return f"{self.email} invited to {self.account} as {self.role}"


class TierRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    GRANTED = "granted", "Granted"
    REFUSED = "refused", "Refused"


class TierRequest(models.Model):
    """A customer's request for a higher rate-limit tier on one key; staff decide in admin."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="tier_requests")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="tier_requests")
    from_tier = models.CharField(max_length=8, choices=RateTier.choices)
    tier = models.CharField("requested tier", max_length=8, choices=RateTier.choices)
    reason = models.TextField(blank=True)
    status = models.CharField(
        max_length=8, choices=TierRequestStatus.choices, default=TierRequestStatus.PENDING
    )
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True, help_text="Staff's answer, shown to the customer.")

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["api_key"],
                condition=Q(status="pending"),
                name="one_pending_tier_request_per_key",
            ),
        ]

    def __str__(self):
        return f"{self.api_key} {self.from_tier} → {self.tier} ({self.status})"


class PortalSession(models.Model):
    """A one-time link into one account's dashboard, made by the operator's platform for one
    of its users (SPEC X4). Only a hash of the link's token is kept."""

    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices)
    # Where the dashboard's "Back to ..." link goes: the operator's own app (http or https).
    return_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(editable=False)
    expires_at = models.DateTimeField(editable=False)

    def __str__(self):
        return f"Portal link for {self.email} into {self.account_id}"


class PortalSessionUse(models.Model):
    """The one use of a portal link: its unique session is the claim that makes it work once."""

    session = models.OneToOneField(
        PortalSession, on_delete=models.CASCADE, related_name="use", editable=False
    )
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    used_at = models.DateTimeField(editable=False)

    def __str__(self):
        return f"Portal link {self.session_id} used by {self.user_id} at {self.used_at}"
