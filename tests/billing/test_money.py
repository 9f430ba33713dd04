"""Money in micro-dollars: rounding, parsing, cents and text (SPEC L1)."""

from decimal import Decimal

import pytest

from billing.money import (
    MoneyError,
    cents_rounding,
    cents_to_micros,
    exact_title,
    format_rate,
    format_usd,
    format_usd_exact,
    micros_to_api,
    micros_to_cents,
    round_commission_micros,
    round_micros,
    usd_input,
    usd_to_micros,
)


def test_83_seconds_at_8_cents_a_minute_rounds_half_up_to_110667_micros():
    exact_cost = Decimal(83) * Decimal("0.08") / 60

    micros = round_micros(exact_cost)

    assert micros == 110_667


@pytest.mark.parametrize(
    ("amount_usd", "micros"),
    [
        (Decimal("0.0000005"), 1),  # exactly half a micro goes up
        (Decimal("0.0000004999"), 0),
        (Decimal("0.0000015"), 2),  # half-up, not banker's rounding to even
        (Decimal("0.0000025"), 3),
        (Decimal("-0.0000005"), -1),  # away from zero for credits back
        (Decimal("12.345678"), 12_345_678),
        (Decimal(0), 0),
    ],
)
def test_round_micros_rounds_half_up_away_from_zero(amount_usd, micros):
    assert round_micros(amount_usd) == micros


@pytest.mark.parametrize(
    ("fee_usd", "micros"),
    [
        (Decimal("0.0000005"), 0),  # half a micro: half-up would charge 1
        (Decimal("0.0000019999"), 1),
        (Decimal("0.0144"), 14_400),  # whole micros are unchanged
        (Decimal(0), 0),
    ],
)
def test_a_commission_rounds_down_to_the_micro_dollar(fee_usd, micros):
    assert round_commission_micros(fee_usd) == micros


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("12.50", 12_500_000),
        ("0.110667", 110_667),
        (" 20 ", 20_000_000),
        ("-5", -5_000_000),
        ("1.500000000", 1_500_000),  # trailing zeros beyond six places are still exact
        (Decimal("0.000001"), 1),
        (7, 7_000_000),
    ],
)
def test_usd_to_micros_parses_strings_decimals_and_integers_exactly(text, micros):
    assert usd_to_micros(text) == micros


def test_usd_to_micros_refuses_a_float():
    with pytest.raises(MoneyError, match="float"):
        usd_to_micros(0.1)


@pytest.mark.parametrize("text", ["1.1234567", "0.0000001", Decimal("2.0000005")])
def test_usd_to_micros_refuses_more_than_six_decimals(text):
    with pytest.raises(MoneyError, match="six decimals"):
        usd_to_micros(text)


def test_usd_to_micros_refuses_a_seventh_decimal_hidden_past_decimal_precision():
    # 31 decimals: multiplying in Decimal's default 28-digit context would round the 1 away.
    with pytest.raises(MoneyError, match="six decimals"):
        usd_to_micros("0.1000000000000000000000000000001")


# Text with an exponent or underscores is no amount a person writes: "1e3" is not 1,000 USD.
@pytest.mark.parametrize(
    "text",
    ["abc", "", "12,50", "1e", "NaN", "Infinity", "-inf", "$5", "1e3", "1E-2", "1_000", "1e999999"],
)
def test_usd_to_micros_refuses_text_that_is_not_an_amount(text):
    with pytest.raises(MoneyError):
        usd_to_micros(text)


@pytest.mark.parametrize("text", ["1000000000", "-1000000000", Decimal("1e999999")])
def test_usd_to_micros_refuses_amounts_too_large_to_store(text):
    with pytest.raises(MoneyError, match="too large"):
        usd_to_micros(text)


def test_usd_to_micros_accepts_the_largest_storable_amount():
    assert usd_to_micros("999999999.999999") == 999_999_999_999_999


def test_micros_to_cents_converts_whole_cents_for_stripe():
    assert micros_to_cents(20_000_000) == 2000
    assert micros_to_cents(-150_000) == -15
    assert micros_to_cents(0) == 0


@pytest.mark.parametrize("micros", [110_667, 1, 9_999, -5_000])
def test_micros_to_cents_refuses_amounts_that_are_not_whole_cents(micros):
    with pytest.raises(MoneyError, match="whole number of cents"):
        micros_to_cents(micros)


def test_cents_to_micros_is_the_inverse_of_micros_to_cents():
    assert cents_to_micros(micros_to_cents(12_340_000)) == 12_340_000


@pytest.mark.parametrize(
    ("micros", "places", "text"),
    [
        (1_234_560_000, 2, "$1,234.56"),
        (110_667, 6, "$0.110667"),
        (110_667, 2, "$0.11"),
        (115_000, 2, "$0.12"),  # half a cent rounds up
        (-1_234_567, 2, "-$1.23"),
        (-110_667, 6, "-$0.110667"),
        (0, 2, "$0.00"),
        (1_000_000_000_000, 2, "$1,000,000.00"),
    ],
)
def test_format_usd_writes_dollars_for_people(micros, places, text):
    assert format_usd(micros, places=places) == text


def test_format_usd_refuses_other_numbers_of_places():
    with pytest.raises(ValueError, match="places"):
        format_usd(1, places=3)


def test_micros_to_api_writes_six_decimals_as_a_string():
    assert micros_to_api(110_667) == "0.110667"
    assert micros_to_api(-5_000_000) == "-5.000000"


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (110_667, "$0.110667"),  # a single call: every micro-dollar shown
        (1_500_000, "$1.50"),  # never fewer than two decimals
        (12_340, "$0.01234"),
        (-4, "-$0.000004"),
        (1_234_567_000_000, "$1,234,567.00"),
    ],
)
def test_format_usd_exact_shows_the_decimals_a_single_item_needs(micros, text):
    assert format_usd_exact(micros) == text


def test_exact_title_is_empty_when_cents_already_show_the_amount():
    assert exact_title(45_000_000) == ""
    assert exact_title(45_002_666) == "Exactly $45.002666"


@pytest.mark.parametrize(
    ("rate", "text"),
    [("0.08", "$0.08"), ("0.0035", "$0.0035"), ("2.5", "$2.50"), ("1250", "$1,250.00")],
)
def test_format_rate_never_rounds_a_unit_rate(rate, text):
    assert format_rate(Decimal(rate)) == text


def test_usd_input_parses_back_to_the_same_amount():
    for micros in (20_000_000, 125_000, 1_234_567_890_000):
        assert usd_to_micros(usd_input(micros)) == micros
    assert usd_input(20_000_000) == "20.00"
    assert usd_input(None) == ""


def test_cents_rounding_makes_lines_in_cents_add_up_to_the_total_in_cents():
    # Three lines of 0.004 USD: each shows $0.00, the total of 0.012 shows $0.01.
    lines = [4_000, 4_000, 4_000]

    rounding = cents_rounding(total_micros=sum(lines), line_micros=lines)

    assert rounding == 10_000
    shown = [int(format_usd(m).lstrip("$").replace(".", "")) for m in lines]
    assert sum(shown) * 10_000 + rounding == 10_000  # the total as shown: $0.01
