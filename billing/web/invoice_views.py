"""Invoice and statement pages of the customer dashboard, and their PDF (SPEC I1, D3).

Each view first asks `account_for_user` for the account, then looks the invoice up by that
account and its number, so another account's invoice is a 404 like an unknown one.
"""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render

from accounts.permissions import Action, account_for_user
from billing.invoicing.documents import (
    account_receipts,
    invoice_document,
    invoice_summary,
    issued_invoices,
    receipt_document,
)
from billing.models import Invoice

PER_PAGE = 50


def _invoice(account, number: str) -> Invoice:
    return get_object_or_404(
        issued_invoices(account=account).select_related("account"), number=number
    )


@login_required
def invoice_list(request, public_id):
    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    page = Paginator(issued_invoices(account=account), PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "billing/invoice_list.html",
        {
            "account": account,
            "page": page,
            "rows": [invoice_summary(i) for i in page],
            "receipts": [receipt_document(r) for r in account_receipts(account=account)[:PER_PAGE]],
        },
    )


@login_required
def invoice_detail(request, public_id, number):
    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    invoice = _invoice(account, number)
    return render(
        request,
        "billing/invoice_detail.html",
        {"account": account, "doc": invoice_document(invoice)},
    )


@login_required
def invoice_pdf(request, public_id, number):
    # Imported here, as in billing/admin.py's pdf_view: fpdf and its fonts cost every web and
    # worker process about 25 MB, and only the PDF views need them.
    from billing.invoicing.pdf import render_invoice_pdf

    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    invoice = _invoice(account, number)
    return _pdf_response(
        render_invoice_pdf(invoice), filename=f"meterline-{invoice.kind}-{invoice.number}.pdf"
    )


def _pdf_response(pdf: bytes, *, filename: str) -> HttpResponse:
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    # A document is private to the account's members: no shared cache may keep a copy.
    response["Cache-Control"] = "private, no-store"
    return response


def _receipt(account, number: str):
    return get_object_or_404(account_receipts(account=account), number=number)


@login_required
def receipt_detail(request, public_id, receipt_number):
    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    receipt = _receipt(account, receipt_number)
    return render(
        request,
        "billing/receipt_detail.html",
        {"account": account, "doc": receipt_document(receipt)},
    )


@login_required
def receipt_pdf(request, public_id, receipt_number):
    # Imported here for the reason given in invoice_pdf.
    from billing.invoicing.pdf import render_receipt_pdf

    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    receipt = _receipt(account, receipt_number)
    return _pdf_response(render_receipt_pdf(receipt), filename=f"receipt-{receipt.number}.pdf")
