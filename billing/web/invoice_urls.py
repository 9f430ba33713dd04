from django.urls import path

from billing.web import invoice_views as views

app_name = "billing"

urlpatterns = [
    path("", views.invoice_list, name="invoice_list"),
    path("receipts/<str:receipt_number>/", views.receipt_detail, name="receipt_detail"),
    path("receipts/<str:receipt_number>/pdf/", views.receipt_pdf, name="receipt_pdf"),
    path("<str:number>/", views.invoice_detail, name="invoice_detail"),
    path("<str:number>/pdf/", views.invoice_pdf, name="invoice_pdf"),
]
