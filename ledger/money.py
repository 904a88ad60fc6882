"""Money: ISO 4217 currencies, exact parsing and formatting of amounts.

Amounts live as integers of minor units (`amount_minor`). Text is parsed
digit by digit; no float ever touches an amount.
"""

from __future__ import annotations

import re

from ledger.bounds import AMOUNT_TEXT_CHARS_MAX
from ledger.errors import CurrencyNotSupported, ParametersInvalid

__all__ = ["CURRENCY_EXPONENTS", "currency_exponent", "format_minor", "parse_minor"]

# Active ISO 4217 codes (list one) with their minor-unit exponent. Codes whose
# minor unit is "N.A." (precious metals, SDR, test and "no currency" codes) are
# not money and are left out, as are withdrawn codes (ANG, CUC, HRK, SLL, ZWL).
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN "
    "ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD "
    "KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR "
    "MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON "
    "RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT "
    "TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    code: exponent
    for exponent, codes in ((0, _EXPONENT_0), (2, _EXPONENT_2), (3, _EXPONENT_3), (4, _EXPONENT_4))
    for code in codes.split()
}

# Plain decimal notation only: digits, optionally a point and more digits.
# No sign, no exponent, no spaces, no leading or trailing point.
_DECIMAL = re.compile(r"(\d+)(?:\.(\d+))?")


def currency_exponent(currency: str) -> int:
    """The minor-unit exponent of an ISO 4217 code, matched case-insensitively.

    Raises CurrencyNotSupported for anything that is not an active code.
    """
    exponent = CURRENCY_EXPONENTS.get(currency.upper()) if currency.isascii() else None
    if exponent is None:
        raise CurrencyNotSupported(f"currency {currency[:16]!r} is not a supported ISO 4217 code")
    return exponent


def parse_minor(text: str, exponent: int) -> int:
    """Parse decimal text into minor units of a currency with `exponent` digits.

    "12.5" and "12.50" are 1250 for USD; "1000" is 1000 for KRW. Refused with
    ParametersInvalid: empty text, signs, exponent notation, NaN/Infinity,
    spaces, and more fractional digits than the currency has (even zeros:
    "12.500" for USD). The result is never negative; ceilings are the
    caller's business because they depend on the account.
    """
    if len(text) > AMOUNT_TEXT_CHARS_MAX:
        raise ParametersInvalid(f"amount is longer than {AMOUNT_TEXT_CHARS_MAX} characters")
    match = _DECIMAL.fullmatch(text) if text.isascii() else None
    if match is None:
        raise ParametersInvalid(f"amount {text!r} is not a plain non-negative decimal")
    whole: str = match.group(1)
    fraction: str = match.group(2) or ""
    if len(fraction) > exponent:
        raise ParametersInvalid(f"amount {text!r} has more than {exponent} fractional digits")
    scale: int = 10**exponent
    return int(whole) * scale + (int(fraction.ljust(exponent, "0")) if exponent else 0)


def format_minor(amount_minor: int, exponent: int) -> str:
    """Format minor units with exactly `exponent` fractional digits ("12.50", "1000")."""
    sign = "-" if amount_minor < 0 else ""
    magnitude = abs(amount_minor)
    if exponent == 0:
        return f"{sign}{magnitude}"
    scale: int = 10**exponent
    whole, fraction = divmod(magnitude, scale)
    return f"{sign}{whole}.{fraction:0{exponent}d}"
