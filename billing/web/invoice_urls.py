from django.urls import path

from billing.web import invoice_views as views

app_name = "billing"

urlpatterns = [
    path("", views.invoice_list, name="invoice_list"),
    path("<public_id:number>/", views.invoice_detail, name="invoice_detail"),
    path("<public_id:number>/pdf/", views.invoice_pdf, name="invoice_pdf"),
]
