"""`manage.py create_api_token <username>`: a token for admins and automation.

The token is the last line of stdout, so scripts can take it with `tail -n 1`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.errors import StudioError
from accounts.tokens import api_token_create


class Command(BaseCommand):
    help = "Create a personal API token for a user and print it (it is shown only once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="created by manage.py", help="The token's name.")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(options["username"])
        except User.DoesNotExist:
            raise CommandError(f"There is no user named {options['username']!r}.") from None
        try:
            token, raw = api_token_create(user=user, name=options["name"])
        except StudioError as exc:
            raise CommandError(str(exc)) from exc
        if not user.is_active:
            self.stderr.write(f"Warning: {user} is inactive; the token works once they are active.")
        self.stdout.write(f"Created token {token.name!r} ({token.prefix}…) for {user}.")
        self.stdout.write("It is shown only this once:")
        self.stdout.write(raw)
