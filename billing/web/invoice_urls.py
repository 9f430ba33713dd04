from django.urls import path

from billing.web import invoice_views as views

app_name = "billing"

urlpatterns = [
    path("", views.invoice_list, name="invoice_list"),
    path("receipts/<public_id:receipt_number>/", views.receipt_detail, name="receipt_detail"),
    path("receipts/<public_id:receipt_number>/pdf/", views.receipt_pdf, name="receipt_pdf"),
    path("<public_id:number>/", views.invoice_detail, name="invoice_detail"),
    path("<public_id:number>/pdf/", views.invoice_pdf, name="invoice_pdf"),
]
