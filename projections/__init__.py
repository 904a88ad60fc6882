"""The read side: views built from the event log, and the HTTP query API (issue 5)."""

__all__: list[str] = []
