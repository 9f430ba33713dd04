"""The PDF of an invoice or statement (SPEC I1): the same document as its HTML page.

Every figure comes from `billing.invoicing.documents.invoice_document`, so the PDF and the page
cannot disagree. fpdf2 is pure Python (no system libraries); the text is set in DejaVu Sans, bundled
in billing/invoicing/fonts/, because the PDF core fonts only know Latin-1 and an account named "Łódź
Sp. z o.o." must print as such.
"""

import logging
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from fpdf import FPDF, FontFace
from fpdf.enums import TableBordersLayout, XPos, YPos

from billing.invoicing.documents import invoice_document, receipt_document
from billing.models import Invoice, Receipt

FONT_DIR = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVu"
MUTED = (91, 100, 117)
LINE_HEIGHT = 6

# fontTools reports every step of subsetting the font at INFO, dozens of lines per PDF.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)


def _date(moment: datetime | None, *, with_time: bool = False) -> str:
    if moment is None:
        return "—"
    text = f"{moment.day} {moment:%b %Y}"
    return f"{text} {moment:%H:%M %Z}".rstrip() if with_time else text


class _InvoicePDF(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.add_font(FONT, "", FONT_DIR / "DejaVuSans.ttf")
        self.add_font(FONT, "B", FONT_DIR / "DejaVuSans-Bold.ttf")
        self.set_title(title)
        self.set_author(settings.SELLER_LEGAL_NAME or settings.BRAND_NAME)
        self.set_creator(settings.BRAND_NAME)
        self.set_auto_page_break(auto=True, margin=18)
        self.alias_nb_pages()
        self._title = title

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, "", 8)
        self.set_text_color(*MUTED)
        self.cell(0, 5, f"{self._title} · page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0)


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(4)
    pdf.set_font(FONT, "B", 12)
    pdf.cell(0, 8, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 10)


def _pairs(pdf: FPDF, rows: list[tuple[str, str]], *, label_width: float = 45) -> None:
    """Label and value rows, the label muted: the facts and the totals."""
    for label, value in rows:
        pdf.set_text_color(*MUTED)
        pdf.cell(label_width, LINE_HEIGHT, label)
        pdf.set_text_color(0)
        pdf.multi_cell(0, LINE_HEIGHT, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _logo_file() -> str | None:
    """Return the brand's logo as a local file fpdf can embed, or None (no network, ever)."""
    logo = settings.BRAND_LOGO
    if not logo or "://" in logo or not logo.lower().endswith((".png", ".jpg", ".jpeg")):
        return None
    return finders.find(logo)


def document_head(pdf: FPDF, title: str) -> None:
    """The brand (logo or name) and the document's title, as on every document."""
    logo = _logo_file()
    if logo:
        pdf.image(logo, h=10)
    else:
        pdf.set_font(FONT, "B", 9)
        pdf.set_text_color(*MUTED)
        pdf.cell(0, 5, settings.BRAND_NAME.upper(), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(0)
    pdf.set_font(FONT, "B", 18)
    pdf.cell(0, 11, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 10)


def _party_text(party: dict) -> str:
    lines = [party.get("legal_name", ""), *party.get("address", [])]
    if party.get("country"):
        lines.append(party["country"])
    if party.get("tax_id"):
        lines.append(f"Tax ID {party['tax_id']}")
    if party.get("email"):
        lines.append(party["email"])
    return "\n".join(line for line in lines if line)


def document_parties(pdf: FPDF, seller: dict, customer: dict) -> None:
    """Seller and customer side by side: "From" and "Bill to"."""
    pdf.ln(2)
    half = (pdf.w - pdf.l_margin - pdf.r_margin) / 2
    top = pdf.get_y()
    ends = []
    for column, (label, party) in enumerate((("From", seller), ("Bill to", customer))):
        pdf.set_xy(pdf.l_margin + column * half, top)
        pdf.set_font(FONT, "B", 9)
        pdf.set_text_color(*MUTED)
        pdf.cell(half - 4, 5, label, new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_text_color(0)
        pdf.set_font(FONT, "", 10)
        pdf.multi_cell(half - 4, 5, _party_text(party), new_x=XPos.LEFT, new_y=YPos.NEXT)
        ends.append(pdf.get_y())
    pdf.set_xy(pdf.l_margin, max(ends) + 2)


def render_invoice_pdf(invoice: Invoice) -> bytes:
    """Return the invoice or statement as a PDF document."""
    doc = invoice_document(invoice)
    title = f"{doc['kind_label']} {doc['number']}"
    pdf = _InvoicePDF(title)
    pdf.add_page()
    document_head(pdf, title)
    document_parties(pdf, doc["seller"], doc["customer"])

    facts = [
        ("Account", f"{doc['account_name']} ({doc['account_public_id']})"),
        ("Billing email", doc["account_email"]),
        *([] if doc["is_statement"] else [("Status", doc["status_label"])]),
        ("Reason", doc["reason_label"]),
        ("Period", doc["period"]),
        ("Issued", _date(doc["issued_at"])),
    ]
    if not doc["is_statement"]:
        facts.append(("Due", _date(doc["due_at"])))
        if doc["paid_at"]:
            facts.append(("Paid", _date(doc["paid_at"])))
    _pairs(pdf, facts)

    heading_style = FontFace(emphasis="BOLD", fill_color=(240, 242, 246))
    for section in doc["sections"]:
        _heading(pdf, section["title"])
        with pdf.table(
            col_widths=(75, 35, 40, 30),
            text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
            headings_style=heading_style,
            borders_layout=TableBordersLayout.HORIZONTAL_LINES,
            line_height=LINE_HEIGHT,
        ) as table:
            table.row(("Description", "Quantity", "Unit price", "Amount"))
            for line in section["lines"]:
                description = line["description"]
                if line["savings"]:
                    description += f" (savings {line['savings']})"
                table.row((description, line["quantity"], line["unit_price"], line["amount"]))
            if not section["lines"]:
                table.row(("None in this period.", "", "", ""))

    _heading(pdf, "Totals")
    if doc["is_statement"]:
        totals = [
            ("Opening balance", doc["opening_balance"]),
            ("Usage", doc["subtotal"]),
            ("Closing balance", doc["closing_balance"]),
        ]
    else:
        totals = [
            ("Usage subtotal", doc["subtotal"]),
            *([("Rounding to cents", doc["rounding"])] if doc["rounding"] else []),
            ("Total", doc["total"]),
            ("Amount paid", doc["amount_paid"]),
            ("Amount due", doc["amount_due"]),
        ]
    _pairs(pdf, totals)

    if doc["payments"]:
        _heading(pdf, "Payments")
        with pdf.table(
            col_widths=(20, 40, 50, 30, 40),
            text_align=("RIGHT", "LEFT", "LEFT", "RIGHT", "LEFT"),
            headings_style=heading_style,
            borders_layout=TableBordersLayout.HORIZONTAL_LINES,
            line_height=LINE_HEIGHT,
        ) as table:
            table.row(("Attempt", "Status", "Date", "Amount", "Note"))
            for payment in doc["payments"]:
                table.row(
                    (
                        str(payment["attempt"]),
                        payment["status"],
                        _date(payment["at"], with_time=True),
                        payment["amount"],
                        payment["error"],
                    )
                )
    return bytes(pdf.output())


def render_receipt_pdf(receipt: Receipt) -> bytes:
    """Return the receipt as a PDF document: the same content as its page."""
    doc = receipt_document(receipt)
    pdf = _InvoicePDF(doc["title"])
    pdf.add_page()
    document_head(pdf, doc["title"])
    document_parties(pdf, doc["seller"], doc["customer"])
    facts = [
        ("Account", f"{doc['account_name']} ({doc['account_public_id']})"),
        ("Paid", _date(doc["paid_at"], with_time=True)),
        ("Payment method", doc["method"]),
    ]
    if doc["reference"]:
        facts.append(("Reference", doc["reference"]))
    if doc["invoice_number"]:
        facts.append(("Invoice", doc["invoice_number"]))
    _pairs(pdf, facts)
    _heading(pdf, "Payment")
    _pairs(pdf, [(doc["description"], ""), ("Amount paid", doc["amount"])], label_width=120)
    return bytes(pdf.output())
