"""The event log: append-only truth, projections derived from it, and replay."""

from events.log import Appended, EventDecodeError, EventLog, Record, Transaction

__all__ = ["Appended", "EventDecodeError", "EventLog", "Record", "Transaction"]
