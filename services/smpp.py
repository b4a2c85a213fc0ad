"""SMPP field rules shared by sender names and campaigns: SADDR, TON and NPI."""
from services.errors import DomainError

TON_VALUES = range(0, 7)
NPI_VALUES = (0, 1, 3, 4, 6, 8, 9, 10, 14, 18)
TON_NAMES = {0: "Unknown", 1: "International", 2: "National", 3: "Network specific", 4: "Subscriber number",
             5: "Alphanumeric", 6: "Abbreviated"}
NPI_NAMES = {0: "Unknown", 1: "ISDN (E.163/E.164)", 3: "Data (X.121)", 4: "Telex (F.69)", 6: "Land mobile (E.212)",
             8: "National", 9: "Private", 10: "ERMES", 14: "Internet (IP)", 18: "WAP client id"}

# The GSM 03.38 basic character set (without the escape table) — what an alphanumeric SADDR may use.
GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")


def validate_saddr(saddr):
    """Alphanumeric up to 11 GSM characters, or numeric up to 15 digits. Returns the cleaned value."""
    value = (saddr or "").strip()
    if not value:
        raise DomainError("Enter the sender address (SADDR).", code="invalid_saddr")
    if value.isdigit():
        if len(value) > 15:
            raise DomainError(f"A numeric SADDR has at most 15 digits (this one has {len(value)}).",
                              code="invalid_saddr")
        return value
    if len(value) > 11:
        raise DomainError(f"An alphanumeric SADDR has at most 11 characters (this one has {len(value)}).",
                          code="invalid_saddr")
    bad = sorted({c for c in value if c not in GSM_BASIC or c in "\r\n"})
    if bad:
        raise DomainError(f"The SADDR may only use GSM characters; remove {' '.join(repr(c) for c in bad)}.",
                          code="invalid_saddr")
    return value


def default_ton_npi(saddr):
    """Sensible defaults: alphanumeric → TON 5 / NPI 0; numeric → international E.164 (1 / 1)."""
    return (1, 1) if saddr.isdigit() else (5, 0)


def validate_ton(value, field="TON"):
    try:
        ton = int(value)
    except (TypeError, ValueError):
        raise DomainError(f"{field} must be a number from 0 to 6.", code="invalid_ton") from None
    if ton not in TON_VALUES:
        raise DomainError(f"{field} must be from 0 to 6 (got {ton}).", code="invalid_ton")
    return ton


def validate_npi(value, field="NPI"):
    try:
        npi = int(value)
    except (TypeError, ValueError):
        raise DomainError(f"{field} must be one of {', '.join(map(str, NPI_VALUES))}.", code="invalid_npi") from None
    if npi not in NPI_VALUES:
        raise DomainError(f"{field} must be one of {', '.join(map(str, NPI_VALUES))} (got {npi}).",
                          code="invalid_npi")
    return npi
