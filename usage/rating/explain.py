"""The price explanation of one call or event as steps people read (SPEC U11).

Rating stores what it did as JSON on the item (`usage.rating`); this module only turns that into
the sequence the usage log shows: raw input → rounding → billed quantity → allowance or paid →
rate → cost, and any refund. Nothing is recomputed, so the page says what was charged.
"""

import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from billing.money import format_usd_exact
from usage.models import Call, CallStatus, UsageEvent

COMPONENT_NAMES = {
    "call": "Call time",
    "llm": "LLM minutes",
    "voice_engine": "Voice engine",
    "destination": "International surcharge",
    "chat": "Chat minutes",
    "sms": "SMS",
    "input_tokens": "Input tokens",
    "output_tokens": "Output tokens",
    "commission": "Commission",
}


def _usd(text) -> str:
    """Return an explanation amount ("0.110667", USD) as "$0.110667"."""
    try:
        value = Decimal(str(text))
    except (InvalidOperation, TypeError):
        return str(text)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.6f}"


# Rating writes a call's rule with the status code ("no_answer calls are billed a flat 5 s");
# people read the status's name, and a flat 0 s is no charge at all.
FLAT_RULE = re.compile(r"(?P<status>[a-z_]+) calls are billed a flat (?P<seconds>\d+) s")
STATUS_RULE = re.compile(r"(?P<status>[a-z_]+) calls are not billed")


def _call_rule(rule: str) -> str:
    """Return a stored call rule as people read it, whatever status code it names."""
    if flat := FLAT_RULE.fullmatch(rule):
        calls = f"calls with status {_status_name(flat['status'])}"
        if flat["seconds"] == "0":
            return f"{calls} are not billed on this plan"
        return f"{calls} are billed a flat {flat['seconds']} s"
    if plain := STATUS_RULE.fullmatch(rule):
        return f"calls with status {_status_name(plain['status'])} are not billed"
    return rule


def _status_name(code: str) -> str:
    return f"“{CallStatus(code).label}”" if code in CallStatus.values else code


def _sentence(text: str) -> str:
    """Capitalise the first letter only (str.capitalize would also lower "USD" and names)."""
    return text[:1].upper() + text[1:]


def _plural(count, one: str, many: str) -> str:
    return f"{_number(count)} {one if str(count) == '1' else many}"


def _number(value) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _plain(text) -> str:
    try:
        return format(Decimal(str(text)).normalize(), "f")
    except (InvalidOperation, TypeError):
        return str(text)


def _exact(text) -> str:
    """Return an exact amount before rounding, cut to 8 decimals with "…" when longer."""
    try:
        value = Decimal(str(text))
    except (InvalidOperation, TypeError):
        return str(text)
    short = value.quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
    return _plain(value) if short == value else f"{_plain(short)}…"


def line_text(line: dict) -> str:
    """Return one priced line: quantity times rate = exact amount → rounded amount."""
    name = COMPONENT_NAMES.get(line.get("component"), line.get("component", ""))
    if line.get("key"):
        name = f"{name} ({line['key']})"
    quantity, unit, rate = line.get("quantity", 0), line.get("unit"), _plain(line.get("rate"))
    amount = _usd(line.get("amount"))
    exact = _exact(line.get("exact"))
    if unit == "second":
        return f"{name}: {_number(quantity)} s × {rate} USD/min ÷ 60 = {exact} → {amount}"  # noqa: RUF001
    if unit == "minute":
        return f"{name}: {_number(quantity)} min × {rate} USD/min = {amount}"  # noqa: RUF001
    if unit == "token":
        return f"{name}: {_number(quantity)} × {rate} USD per million = {exact} → {amount}"  # noqa: RUF001
    if unit == "request":
        return f"{name}: {rate}% of the savings = {exact} → {amount}"
    return f"{name}: {_number(quantity)} × {rate} USD = {amount}"  # noqa: RUF001


def _rates_and_cost(explanation: dict, steps: list[dict]) -> None:
    lines = explanation.get("lines") or []
    for line in lines:
        steps.append({"label": "Rate", "text": line_text(line)})
    if explanation.get("rounding") and lines:
        steps.append({"label": "Rounding", "text": _sentence(explanation["rounding"]) + "."})


def _charged(item, steps: list[dict]) -> None:
    text = format_usd_exact(item.cost_micros)
    if item.uncollected_micros:
        text += (
            f"; {format_usd_exact(item.charged_micros)} taken from the balance, "
            f"{format_usd_exact(item.uncollected_micros)} not covered by it"
        )
    steps.append({"label": "Cost", "text": text})
    if item.refunded_micros:
        steps.append(
            {
                "label": "Refund",
                "text": f"{format_usd_exact(item.refunded_micros)} credited back",
            }
        )


def call_steps(call: Call) -> list[dict]:
    """Return the explanation of a rated call, step by step."""
    explanation = call.explanation or {}
    raw = explanation.get("raw") or {}
    steps: list[dict] = []
    if not explanation:
        steps.append({"label": "Status", "text": f"{call.get_status_display()}: not billed yet."})
        return steps
    raw_text = _call_rule(raw.get("rule", ""))
    if "raw_ms" in raw:
        raw_text = f"{int(raw['raw_ms']) / 1000:,.3f} s, {raw_text}"
    steps.append({"label": "Raw", "text": _sentence(raw_text)})
    if raw.get("rounding"):
        steps.append({"label": "Rounding", "text": _sentence(raw["rounding"])})
    steps.append({"label": "Billed", "text": f"{_number(explanation.get('billed_seconds', 0))} s"})
    allowance = int(explanation.get("allowance_seconds") or 0)
    paid = int(explanation.get("paid_seconds") or 0)
    if allowance:
        steps.append(
            {
                "label": "Allowance or paid",
                "text": f"{_number(allowance)} s from the included minutes, {_number(paid)} s paid",
            }
        )
    else:
        steps.append({"label": "Allowance or paid", "text": f"{_number(paid)} s paid"})
    events = explanation.get("billing_events") or {}
    carried = explanation.get("carried_seconds") or {}
    if events:
        parts = []
        for name, minutes in events.items():
            label = COMPONENT_NAMES.get(name.split(":", 1)[0], name)
            parts.append(
                f"{label}: {minutes} whole minute{'s' if minutes != 1 else ''}, "
                f"{carried.get(name, 0)} s carried to the next call"
            )
        steps.append({"label": "Minute aggregation", "text": "; ".join(parts)})
    _rates_and_cost(explanation, steps)
    _charged(call, steps)
    return steps


def event_steps(event: UsageEvent) -> list[dict]:
    """Return the explanation of a rated event (chat, SMS, tokens, commission), step by step."""
    explanation = event.explanation or {}
    steps: list[dict] = []
    if "messages" in explanation:  # chat
        steps.append({"label": "Raw", "text": f"{_number(explanation['messages'])} AI messages"})
        steps.append({"label": "Rule", "text": _sentence(explanation.get("rule", ""))})
        minutes = explanation.get("billable_minutes", 0)
        carried = explanation.get("carried_messages", 0)
        steps.append(
            {
                "label": "Billed",
                "text": f"{_plural(minutes, 'billable minute', 'billable minutes')}, "
                f"{_plural(carried, 'message', 'messages')} carried over",
            }
        )
        covered = explanation.get("allowance_minutes", 0)
        if covered:
            steps.append(
                {"label": "Allowance or paid", "text": f"{covered} min from the included minutes"}
            )
    elif "start_within" in explanation:  # flex commission
        steps.append(
            {
                "label": "Raw",
                "text": f"{explanation.get('provider') or '?'} / {explanation.get('model') or '?'}"
                f", start_within {explanation.get('start_within') or 'default'}",
            }
        )
        if explanation.get("standard_price") is not None:
            steps.append(
                {
                    "label": "Prices",
                    "text": f"standard {_usd(explanation['standard_price'])}, "
                    f"flex {_usd(explanation.get('flex_price'))}, "
                    f"savings {_usd(explanation.get('savings', 0))}",
                }
            )
        steps.append({"label": "Rule", "text": _sentence(explanation.get("rule", ""))})
    else:
        if event.type in ("llm", "embedding"):
            text = f"{_number(event.quantity)} input tokens"
            if event.type == "llm":
                text += f", {_number(event.output_tokens)} output tokens"
            steps.append({"label": "Raw", "text": f"{text} on {event.model}"})
        elif event.type == "sms":
            steps.append({"label": "Raw", "text": f"{_number(event.quantity)} SMS sent"})
        if explanation.get("rule"):
            steps.append({"label": "Rule", "text": _sentence(explanation["rule"])})
        if explanation.get("price_effective_from"):
            steps.append(
                {
                    "label": "Price list",
                    "text": f"prices in effect since {explanation['price_effective_from'][:10]}",
                }
            )
    _rates_and_cost(explanation, steps)
    _charged(event, steps)
    return steps
