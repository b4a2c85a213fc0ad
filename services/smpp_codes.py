"""SMPP statuses in words, for the Message errors tab.

A message error carries either the `command_status` of the Core's `submit_sm_resp` (8 hex digits,
e.g. ``0x0000000B``; see docs/core-api.md) or a final delivery-receipt state (``UNDELIV``...).
The same number means different things as a submit status and as a workflow error, which is why
this table is only used for *message* errors, never for job errors.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class SmppStatus:
    code: str        # normalised: "0x0000000B" or "UNDELIV"
    name: str        # "ESME_RINVDSTADR"
    meaning: str     # what happened, in words
    transient: bool  # True: the platform retries; False: the message is given up


# SMPP v3.4 command_status values (section 5.1.3) that an ESME sees in a submit_sm_resp.
COMMAND_STATUS = {
    0x00: ("ESME_ROK", "Accepted by the SMSC.", False),
    0x01: ("ESME_RINVMSGLEN", "Message too long for the SMSC — shorten the text.", False),
    0x02: ("ESME_RINVCMDLEN", "Invalid command length (a protocol error between Core and SMSC).", False),
    0x03: ("ESME_RINVCMDID", "Invalid command id (a protocol error between Core and SMSC).", False),
    0x04: ("ESME_RINVBNDSTS", "The Core's SMPP session was in the wrong bind state.", True),
    0x05: ("ESME_RALYBND", "The Core's SMPP session was already bound.", True),
    0x06: ("ESME_RINVPRTFLG", "Invalid priority flag.", False),
    0x07: ("ESME_RINVREGDLVFLG", "Invalid registered-delivery flag.", False),
    0x08: ("ESME_RSYSERR", "System error at the SMSC.", True),
    0x0A: ("ESME_RINVSRCADR", "Invalid source address — check the campaign's SADDR.", False),
    0x0B: ("ESME_RINVDSTADR", "Invalid or barred destination number.", False),
    0x0C: ("ESME_RINVMSGID", "Invalid message id.", False),
    0x0D: ("ESME_RBINDFAIL", "The Core could not bind to the SMSC.", True),
    0x0E: ("ESME_RINVPASWD", "The Core's SMPP password was refused.", True),
    0x0F: ("ESME_RINVSYSID", "The Core's SMPP system id was refused.", True),
    0x11: ("ESME_RCANCELFAIL", "Cancel failed.", False),
    0x13: ("ESME_RREPLACEFAIL", "Replace failed.", False),
    0x14: ("ESME_RMSGQFUL", "SMSC queue full — retried later.", True),
    0x15: ("ESME_RINVSERTYP", "Invalid service type.", False),
    0x33: ("ESME_RINVNUMDESTS", "Invalid number of destinations.", False),
    0x34: ("ESME_RINVDLNAME", "Invalid distribution list name.", False),
    0x40: ("ESME_RINVDESTFLAG", "Invalid destination flag.", False),
    0x42: ("ESME_RINVSUBREP", "Invalid submit-with-replace request.", False),
    0x43: ("ESME_RINVESMCLASS", "Invalid esm_class field.", False),
    0x44: ("ESME_RCNTSUBDL", "Cannot submit to a distribution list.", False),
    0x45: ("ESME_RSUBMITFAIL", "The SMSC refused the message (submit failed).", False),
    0x48: ("ESME_RINVSRCTON", "Invalid source TON — check the campaign's STON.", False),
    0x49: ("ESME_RINVSRCNPI", "Invalid source NPI — check the campaign's SNPI.", False),
    0x50: ("ESME_RINVDSTTON", "Invalid destination TON — check the campaign's DTON.", False),
    0x51: ("ESME_RINVDSTNPI", "Invalid destination NPI — check the campaign's DNPI.", False),
    0x53: ("ESME_RINVSYSTYP", "Invalid system type.", False),
    0x54: ("ESME_RINVREPFLAG", "Invalid replace-if-present flag.", False),
    0x55: ("ESME_RINVNUMMSGS", "Invalid number of messages.", False),
    0x58: ("ESME_RTHROTTLED", "Throttled by the SMSC — retried later.", True),
    0x61: ("ESME_RINVSCHED", "Invalid scheduled delivery time.", False),
    0x62: ("ESME_RINVEXPIRY", "Invalid validity period.", False),
    0x63: ("ESME_RINVDFTMSGID", "Predefined message not found.", False),
    0x64: ("ESME_RX_T_APPN", "Receiver temporary error — retried later.", True),
    0x65: ("ESME_RX_P_APPN", "Receiver permanent error.", False),
    0x66: ("ESME_RX_R_APPN", "Receiver rejected the message.", False),
    0x67: ("ESME_RQUERYFAIL", "Query failed.", False),
    0xC0: ("ESME_RINVOPTPARSTREAM", "Error in the optional part of the PDU.", False),
    0xC1: ("ESME_ROPTPARNOTALLWD", "Optional parameter not allowed.", False),
    0xC2: ("ESME_RINVPARLEN", "Invalid parameter length.", False),
    0xC3: ("ESME_RMISSINGOPTPARAM", "Expected optional parameter missing.", False),
    0xC4: ("ESME_RINVOPTPARAMVAL", "Invalid optional parameter value.", False),
    0xFE: ("ESME_RDELIVERYFAILURE", "Delivery failure (data_sm).", False),
    0xFF: ("ESME_RUNKNOWNERR", "Unknown error at the SMSC (e.g. an unsupported data_coding).", False),
}

# Final states of a delivery receipt (the `stat:` field), reported by the Core's events feed.
DELIVERY_STATES = {
    "DELIVRD": ("Delivered", "Delivered to the handset.", False),
    "UNDELIV": ("Undeliverable", "The network could not deliver it (number unreachable, barred or unknown).", False),
    "EXPIRED": ("Expired", "The validity period passed before the handset was reachable.", False),
    "REJECTD": ("Rejected", "The network or the operator rejected the message.", False),
    "DELETED": ("Deleted", "Deleted at the SMSC before delivery.", False),
    "UNKNOWN": ("Unknown", "The SMSC does not know the final state.", False),
    "ACCEPTD": ("Accepted", "Accepted manually by an SMSC operator.", False),
    "ENROUTE": ("En route", "Still on its way (not final).", True),
}
_BY_NAME = {name: code for code, (name, _, _) in COMMAND_STATUS.items()}


def describe(status: object) -> SmppStatus:
    """The status in words. Accepts '0x0000000B', '0xB', '11', 'ESME_RINVDSTADR' or 'UNDELIV'."""
    raw = (str(status) if status is not None else "").strip()
    if not raw:
        return SmppStatus("", "", "No status was reported.", False)
    upper = raw.upper()
    if upper in DELIVERY_STATES:
        name, meaning, transient = DELIVERY_STATES[upper]
        return SmppStatus(upper, name, meaning, transient)
    value = _BY_NAME.get(upper)
    if value is None:
        try:
            value = int(raw, 16) if upper.startswith("0X") else int(raw)
        except ValueError:
            return SmppStatus(raw, "", "Not an SMPP status this version knows.", False)
    code = f"0x{value:08X}"
    if value in COMMAND_STATUS:
        name, meaning, transient = COMMAND_STATUS[value]
        return SmppStatus(code, name, meaning, transient)
    if 0x400 <= value <= 0x4FF:
        return SmppStatus(code, "vendor specific", "An error defined by the SMSC vendor; ask the operator.", False)
    return SmppStatus(code, "reserved", "A reserved SMPP status; ask the operator what it means.", False)


def is_transient(command_status: object) -> bool:
    """Back-off or give up? True for a submit status worth resubmitting later (throttled 0x58,
    queue full 0x14, system error 0x08, bind trouble, receiver temporary error); every other
    status — unknown and vendor ones included — is permanent for that message."""
    return describe(command_status).transient


def in_words(status: object) -> str:
    """'ESME_RSUBMITFAIL' for '0x00000045'; the raw code when the status has no name."""
    described = describe(status)
    return described.name if described.name and described.name not in ("reserved", "vendor specific") \
        else (described.code or "an unknown status")
