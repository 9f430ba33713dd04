import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from accounts.keys import issue_api_key
from accounts.models import KeyKind, User
from billing.models import Plan
from billing.money import MoneyError, usd_to_micros
from billing.plans.onboarding import OnboardingError, create_account


class Command(BaseCommand):
    help = "Open an account on a plan and print its id and a customer API key."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True, help="Owner and billing contact.")
        parser.add_argument("--plan", required=True, help="Plan code, e.g. voice-prepaid.")
        parser.add_argument("--name", default="", help="Account name (default: the email).")
        parser.add_argument("--credit", default="0", help="Extra credit in USD, e.g. 25.00.")
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args, **options):
        email = options["email"].strip().lower()
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"'{options['email']}' is not an email address.") from None
        plan = Plan.objects.filter(code=options["plan"]).first()
        if plan is None:
            codes = ", ".join(Plan.objects.order_by("code").values_list("code", flat=True))
            raise CommandError(f"No plan '{options['plan']}'. Plans: {codes or 'none loaded'}.")
        try:
            credit = usd_to_micros(options["credit"])
        except MoneyError as exc:
            raise CommandError(str(exc)) from None
        now = timezone.now()
        try:
            with transaction.atomic():
                owner = User.objects.filter(email=email).first() or User.objects.create_user(
                    email=email
                )
                account = create_account(
                    name=options["name"] or email,
                    email=email,
                    plan=plan,
                    now=now,
                    owner=owner,
                    credit_micros=credit,
                )
                issued = issue_api_key(
                    kind=KeyKind.CUSTOMER,
                    name="Default key",
                    now=now,
                    account=account,
                    tier=plan.default_rate_tier,
                )
        except OnboardingError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps({"account": account.public_id, "key": issued.token}))
        else:
            self.stdout.write(f"Account: {account.public_id}\nCustomer key: {issued.token}")
