"""Permissions of the REST API.

Objects of other users are filtered out of querysets (so a foreign id answers 404 and leaks
nothing); these classes only decide who may call an endpoint at all.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission


class IsStaff(BasePermission):
    """Staff only (recompute, runs, previews of other users' recommendations): 403 for others."""

    message = "Staff only."

    def has_permission(self, request, view) -> bool:  # noqa: ANN001 - DRF signature
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)
