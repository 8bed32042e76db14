"""How a connection to a client that is given up on is closed: what nginx's close() does, through
an asyncio transport that hides its socket's shutdown() and SO_LINGER."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

_LINGER_RESET = struct.pack("ii", 1, 0)  # struct linger {l_onoff 1, l_linger 0}


def reset_on_close(transport: asyncio.BaseTransport) -> None:
    """SO_LINGER 0: closing the socket sends RST (nginx's reset_timedout_connection). Under TLS the
    transport hides its socket ("socket" is None there, so that files are not sendfile()d)."""
    sock = transport.get_extra_info("socket") or transport.get_extra_info("tcp_socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass  # already gone: nothing to reset


def shut_writes(transport: asyncio.BaseTransport) -> None:
    """Nothing more goes to the socket: a write the loop has queued already would still go out
    before abort() closes it (at the end of the loop's turn), so the log's count of what went would
    be short of what the client gets. shutdown() on a duplicate: the transport's socket refuses it."""
    sock = transport.get_extra_info("socket") or transport.get_extra_info("tcp_socket")
    if sock is None:
        return
    try:
        with socket.socket(fileno=os.dup(sock.fileno())) as dup:
            dup.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # already gone
