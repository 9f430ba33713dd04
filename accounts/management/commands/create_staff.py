from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.staff_roles import ROLES, RoleError, create_staff


class Command(BaseCommand):
    help = "Make a staff member with a role: support, finance or admin (operator admin)."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--role", required=True, choices=list(ROLES))
        parser.add_argument(
            "--password", default=None, help="Default: none; the user sets it by email."
        )

    def handle(self, *args, **options):
        try:
            validate_email(options["email"].strip())
        except ValidationError:
            raise CommandError(f"'{options['email']}' is not an email address.") from None
        try:
            user, created = create_staff(
                email=options["email"], role=options["role"], password=options["password"]
            )
        except RoleError as exc:
            raise CommandError(str(exc)) from None
        group = ROLES[options["role"]][0]
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} staff member {user.email} in the group {group}.")
