"""The API's envelope: `{code, message, data}` bodies and the HTTP status of each code.

ApiError               an answer other than 0; carries its contract code
└── (raised anywhere in a request; the app turns it into an envelope)
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from ledger.errors import Code
from projections.bounds import RETRY_AFTER_SECONDS

__all__ = ["HTTP_STATUS", "ApiError", "envelope", "error_response"]

# Contract section 6: HTTP status by code.
HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.VALIDATION_ERROR: 400,
    Code.PARAMETERS_INVALID: 400,
    Code.TOKEN_NOT_FOUND: 401,
    Code.TOKEN_INVALID: 401,
    Code.PERMISSION_ERROR: 403,
    Code.IP_NOT_ALLOWED: 403,
    Code.AGENT_NOT_FOUND: 404,
    Code.USER_NOT_FOUND: 404,
    Code.SERVER_IS_BUSY: 429,
    Code.INTERNAL_SERVER_ERROR: 503,
}


class ApiError(Exception):
    """A request answered with a contract error code (never for an internal bug's details)."""

    def __init__(self, code: Code, message: str) -> None:
        assert code in HTTP_STATUS, f"code {code} has no HTTP status"
        super().__init__(message)
        self.code = code
        self.message = message


def envelope(code: Code, message: str, data: dict[str, Any]) -> Response:
    """The response for a code: its HTTP status, the JSON body, Retry-After on 503."""
    status = HTTP_STATUS[code]
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    body = orjson.dumps({"code": int(code), "message": message, "data": data})
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(error: ApiError) -> Response:
    return envelope(error.code, error.message, {})
