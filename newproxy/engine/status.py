"""nginx 1.22's status lines and built-in error pages, byte for byte.

Measured against the binary (a sweep of all codes 200-599 while building this; the differential
test tests/test_differential_routing.py::test_return_forms_match_nginx keeps 54 of them, every
special one included):
a code nginx has no reason phrase for gets ``HTTP/1.1 NNN `` with a trailing space; a code it has
no page for gets an empty body.
"""

from __future__ import annotations

REASONS: dict[int, str] = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Moved Temporarily", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Not Allowed", 406: "Not Acceptable", 408: "Request Time-out",
    409: "Conflict", 410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Large", 415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable", 421: "Misdirected Request", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Temporarily Unavailable", 504: "Gateway Time-out", 505: "HTTP Version Not Supported",
    507: "Insufficient Storage",
}

# The <title> of a page differs from the status line for a few codes (302 says "Found").
_PAGE_TITLES: dict[int, str] = {
    301: "301 Moved Permanently", 302: "302 Found", 303: "303 See Other",
    307: "307 Temporary Redirect", 308: "308 Permanent Redirect",
    400: "400 Bad Request", 401: "401 Authorization Required", 402: "402 Payment Required",
    403: "403 Forbidden", 404: "404 Not Found", 405: "405 Not Allowed", 406: "406 Not Acceptable",
    408: "408 Request Time-out", 409: "409 Conflict", 410: "410 Gone", 411: "411 Length Required",
    412: "412 Precondition Failed", 413: "413 Request Entity Too Large",
    414: "414 Request-URI Too Large", 415: "415 Unsupported Media Type",
    416: "416 Requested Range Not Satisfiable", 421: "421 Misdirected Request",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error", 501: "501 Not Implemented", 502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out",
    505: "505 HTTP Version Not Supported", 507: "507 Insufficient Storage",
}

# nginx's internal codes 494-497 answer "400 Bad Request" with a page of their own; 498 answers
# with its own number but the 404 page.
_SPECIAL_400 = {
    494: "Request Header Or Cookie Too Large",
    495: "The SSL certificate error",
    496: "No required SSL certificate was sent",
    497: "The plain HTTP request was sent to HTTPS port",
}

# Error pages after which nginx drops keep-alive (ngx_http_special_response_handler).
CLOSE_AFTER: frozenset[int] = frozenset({400, 413, 414, 497, 495, 496, 500, 501})


def status_line(status: int) -> bytes:
    reason = REASONS.get(status)
    return f"HTTP/1.1 {status} {reason}\r\n".encode() if reason else f"HTTP/1.1 {status} \r\n".encode()


def wire_status(status: int) -> int:
    """The status nginx puts on the wire for an internal code (494-497 are sent as 400)."""
    return 400 if status in _SPECIAL_400 else status


def _page(title: str, heading: str, extra: str, token: str) -> bytes:
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{heading}</h1></center>\r\n{extra}"
        f"<hr><center>{token}</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


def error_page(status: int, token: str) -> bytes | None:
    """The built-in page for ``status``, or None when nginx has none (the body is then empty)."""
    if status in _SPECIAL_400:
        text = _SPECIAL_400[status]
        return _page(f"400 {text}", "400 Bad Request", f"<center>{text}</center>\r\n", token)
    if status == 498:
        return _page(_PAGE_TITLES[404], _PAGE_TITLES[404], "", token)
    title = _PAGE_TITLES.get(status)
    if title is None:
        return None
    return _page(title, title, "", token)
