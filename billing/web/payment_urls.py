"""The payment flow of an account behind its Billing page: checkout returns, cards, test mode."""

from django.urls import path

from billing.web import payment_views as views

app_name = "payments"

urlpatterns = [
    path("", views.payments_home, name="home"),
    path("topup/<public_id:topup_id>/done/", views.checkout_success, name="checkout_success"),
    path("topup/<public_id:topup_id>/canceled/", views.checkout_cancel, name="checkout_cancel"),
    path("topup/<public_id:topup_id>/test-pay/", views.test_checkout, name="test_checkout"),
    path("topup/<public_id:topup_id>/complete/", views.resume_topup, name="resume_topup"),
    path("topup/<public_id:topup_id>/cancel/", views.cancel_topup, name="cancel_topup"),
    path("cards/add/", views.add_card, name="add_card"),
    path("cards/added/", views.card_added, name="card_added"),
    path("cards/test/", views.test_card, name="test_card"),
    path("cards/<int:card_id>/default/", views.set_default_card, name="set_default_card"),
    path("cards/<int:card_id>/remove/", views.remove_card, name="remove_card"),
]
