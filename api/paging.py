"""Lists that answer a JSON array (runs, tasks) name their next page in headers: `Link: <…>; rel="next"`
(RFC 8288) and `X-Next-Cursor`, so clients written against the array keep working. Newer lists answer a
`{items, next_cursor}` envelope (domain/pagination.py `Page`)."""

from __future__ import annotations

from fastapi import Query, Request, Response

from domain.pagination import CURSOR_PATTERN, MAX_SEARCH_LENGTH

CursorQuery = Query(default=None, pattern=CURSOR_PATTERN, description="`X-Next-Cursor` of the page before")
SearchQuery = Query(default=None, max_length=MAX_SEARCH_LENGTH,
                    description="words to find (each matches a word's beginning), e.g. `subculture S-000123`")


def link_next(request: Request, response: Response, cursor: str | None) -> None:
    """Name the next page in the response's headers, when there is one."""
    if cursor is None:
        return
    url = request.url.include_query_params(cursor=cursor)
    response.headers["Link"] = f'<{url}>; rel="next"'
    response.headers["X-Next-Cursor"] = cursor
