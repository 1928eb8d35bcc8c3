"""Keyset pagination of the list routes: an opaque ``cursor``, a ``limit``, and a ``next`` link.

A list answers one page as a JSON array, as ever; when more rows follow, the response carries
``Link: </tickets?…&cursor=…>; rel="next"`` (a relative URL: no response names a host) and the
bare cursor in ``X-Next-Cursor``. A cursor is the (sort, position) of the page's last row,
base64url-encoded JSON: it is opaque to clients, and a forged one can only move within what the
caller may see anyway. ``offset`` still works (deprecated: deep offsets cost what they skip).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import HTTPException, Query, Request, Response, status

from service.store.queries import Position

T = TypeVar("T")

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_OFFSET = 1_000_000
MAX_CURSOR = 512

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")]
Offset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="rows to skip (deprecated: use cursor)")
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR,
        pattern=r"^[A-Za-z0-9_-]+={0,2}$",
        description="the X-Next-Cursor of the previous page",
    ),
]


def encode_cursor(sort: str, position: Position) -> str:
    """The cursor of ``position`` under ``sort``."""
    raw = json.dumps([sort, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")  # nothing to escape in a URL


def decode_cursor(cursor: str | None, sort: str, shape: Sequence[type]) -> Position | None:
    """The position a cursor names (None without one); 422 when it is not one of ``sort``'s."""
    if cursor is None:
        return None
    try:
        padded = cursor.rstrip("=") + "=" * (-len(cursor.rstrip("=")) % 4)
        value: Any = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != len(shape) + 1
        or value[0] != sort
        or not all(type(v) is t for v, t in zip(value[1:], shape, strict=True))
        # A forged position beyond the stores' 64-bit integers would overflow in the query.
        or any(type(v) is int and not -(2**63) <= v < 2**63 for v in value[1:])
    ):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"invalid cursor for sort {sort!r}: pass the X-Next-Cursor of the previous page",
        )
    return tuple(value[1:])


def page(
    rows: Sequence[tuple[T, Position]], limit: int, sort: str, request: Request, response: Response
) -> list[T]:
    """The first ``limit`` rows; with a next link when the store found one row more."""
    if len(rows) > limit:
        cursor = encode_cursor(sort, rows[limit - 1][1])
        params = [(k, v) for k, v in request.query_params.multi_items() if k not in _REPLACED]
        params.append(("cursor", cursor))
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params)
        response.headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
        response.headers["X-Next-Cursor"] = cursor
    return [item for item, _ in rows[:limit]]


_REPLACED = frozenset({"cursor", "offset"})


def _quote(text: str) -> str:
    """``text`` safe inside a query string and a Link header's URL."""
    return quote(text, safe="")
