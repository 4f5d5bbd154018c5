"""Forms of the demo shop: rating, cart and the one-click demo sign-in."""

from django import forms
from django.contrib.auth import get_user_model

from shopreco.conf import reco_settings

DEMO_CUSTOMER_PREFIX = "customer"


class RatingForm(forms.Form):
    score = forms.TypedChoiceField(
        coerce=int, widget=forms.RadioSelect, label="Your rating",
        choices=[(i, f"{i} star{'s' if i > 1 else ''}") for i in range(5, 0, -1)],
    )

    def clean_score(self) -> int:
        score = self.cleaned_data["score"]
        low, high = reco_settings.RATING_MIN, reco_settings.RATING_MAX
        if not low <= score <= high:
            raise forms.ValidationError(f"score: must be between {low:g} and {high:g}.")
        return score


class AddToCartForm(forms.Form):
    quantity = forms.IntegerField(min_value=1, max_value=20, initial=1, label="Quantity")
    rec = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)


class CartUpdateForm(forms.Form):
    product = forms.IntegerField(min_value=1)
    quantity = forms.IntegerField(min_value=0, max_value=20)


class DemoLoginForm(forms.Form):
    """Sign in as one of the seeded demo customers with one click (never staff accounts)."""

    username = forms.CharField(max_length=150)

    def clean_username(self):
        username = self.cleaned_data["username"]
        user = (
            get_user_model()
            ._default_manager.filter(username=username, is_staff=False, is_superuser=False,
                                     is_active=True, username__startswith=DEMO_CUSTOMER_PREFIX)
            .first()
        )
        if user is None:
            raise forms.ValidationError(f"username: {username!r} is not a demo customer.")
        self.user = user
        return username
