"""``manage.py demo_admin``: make sure the demo can be logged into and say how (``make demo``).

Creates the superuser ``admin`` / ``admin`` when missing (an existing account keeps its
password: the command never resets a password someone chose) and prints the admin and shop
login URLs with two demo customers who have activity to personalise from.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count
from django.urls import reverse
from django.utils.translation import ngettext

ADMIN_USERNAME = ADMIN_PASSWORD = "admin"
CUSTOMER_PASSWORD = "demo"


class Command(BaseCommand):
    help = "Ensure the admin/admin superuser exists and print demo login details."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Host the demo is served on.")
        parser.add_argument("--port", default="8000", help="Port the demo is served on.")

    def handle(self, *args: Any, **opts: Any) -> None:
        users = get_user_model()
        admin = users._default_manager.filter(username=ADMIN_USERNAME).first()
        if admin is None:
            users._default_manager.create_superuser(
                ADMIN_USERNAME, email="admin@example.com", password=ADMIN_PASSWORD
            )
            admin_password = ADMIN_PASSWORD
        else:
            if not (admin.is_staff and admin.is_superuser and admin.is_active):
                admin.is_staff = admin.is_superuser = admin.is_active = True
                admin.save(update_fields=["is_staff", "is_superuser", "is_active"])
            admin_password = (ADMIN_PASSWORD if admin.check_password(ADMIN_PASSWORD)
                              else "(changed; not reset)")
        base = f"http://{opts['host']}:{opts['port']}"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo shop:   {base}/"))
        self.stdout.write(
            f"Admin:       {base}{reverse('admin:index')}  "
            f"user {ADMIN_USERNAME!r}, password {admin_password!r}"
        )
        customers = self._demo_customers(users)
        if customers:
            self.stdout.write(f"Shop login:  {base}{reverse('catalog:login')}")
            for customer in customers:
                password = (CUSTOMER_PASSWORD if customer.check_password(CUSTOMER_PASSWORD)
                            else "(unknown)")
                self.stdout.write(
                    f"  customer {customer.get_username()!r}, password {password!r}"
                    f" ({customer.n_ratings} "
                    f"{ngettext('rating', 'ratings', customer.n_ratings)})"
                )
        else:
            self.stdout.write("No demo customers yet: run `manage.py seed_demo` first.")
        self.stdout.write("")

    def _demo_customers(self, users: Any) -> list:
        """Two shoppers with a history: seeded customers first, else the most active users."""
        qs = users._default_manager.filter(is_staff=False, is_active=True).annotate(
            n_ratings=Count("shopreco_ratings")
        )
        seeded = qs.filter(username__regex=r"^customer\d+$", n_ratings__gt=0).order_by("username")
        picked = list(seeded[:2])
        if len(picked) < 2:
            picked += list(qs.exclude(pk__in=[u.pk for u in picked]).filter(n_ratings__gt=0)
                           .order_by("-n_ratings", "pk")[: 2 - len(picked)])
        return picked
