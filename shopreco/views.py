"""The click endpoint used by the optional ``shopreco/clicks.js`` script."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from shopreco import serving, tracking


@csrf_exempt  # sendBeacon cannot send the CSRF header; it only touches the caller's own session
@require_POST
def click(request: HttpRequest) -> HttpResponse:
    """Remember which recommendation a shopper clicked, so a later cart or purchase of that
    product is credited to it even when the product URL lost its ``?rec=`` parameter."""
    rec = request.POST.get("rec", "")
    product = request.POST.get("product", "")
    if not rec or not product:
        return JsonResponse({"error": "rec and product are required."}, status=400)
    if not serving.personalization_allowed(None, request):
        return HttpResponse(status=204)
    if not tracking.remember_click(request, product, rec):
        return JsonResponse({"error": "rec: unknown recommendation id for this product."},
                            status=400)
    return HttpResponse(status=204)
