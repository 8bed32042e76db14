"""HPACK for the HTTP/2 front end's hot path, plugged into h2's connection (``conn.encoder`` /
``conn.decoder``): the ``hpack`` package's pure-Python coder costs tens of microseconds per
header block, the largest share of a small HTTP/2 answer.

- ``NginxEncoder`` never uses the dynamic table: every field is encoded as nginx 1.22 encodes it
  (its own with a static name index, the rest literal), so a field's bytes do not depend on what was
  sent before and are memoised per (name, value): encoding a head is a few dict lookups and a join.
- ``CachingDecoder`` is hpack's decoder with a memo of whole header blocks: a block that left the
  dynamic table as it was (only indexed fields and literals without indexing: a client repeating a
  request) decodes to the same list while the table is unchanged, so a repeat is one dict lookup.
  A table generation counter, bumped on every insertion and resize, keys the memo.
"""

from __future__ import annotations

from hpack import Decoder
from hpack.hpack import encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

_MEMO_MAX = 4096  # fields memoised by the encoder (Date and Content-Length values come and go)
_BLOCKS_MAX = 256  # header blocks memoised per connection by the decoder

_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
# ngx_http_v2_header_filter's fields with a static name index of their own ("inc_indexed": 0x40 | index,
# then the value); any other field is 0x00, the name, the value. Content-Length's digits go raw.
_NGINX_NAMED = {b"server": 54, b"date": 33, b"content-type": 31, b"last-modified": 44, b"location": 46}
_NGINX_STATUS = {b"200": 8, b"204": 9, b"206": 10, b"304": 11, b"400": 12, b"404": 13, b"500": 14}


def _nginx_string(value: bytes) -> bytes:
    """ngx_http_v2_string_encode: Huffman when that is shorter, else raw."""
    coded = _HUFFMAN.encode(value)
    if len(coded) < len(value):
        head = encode_integer(len(coded), 7)
        head[0] |= 0x80
        return bytes(head) + coded
    return bytes(encode_integer(len(value), 7)) + value


def _nginx_field(name: bytes, value: bytes) -> bytes:
    if name == b":status":
        index = _NGINX_STATUS.get(value)
        return bytes((0x80 | index,)) if index is not None else b"\x48\x03" + value
    if name == b"content-length":
        return b"\x5c" + bytes(encode_integer(len(value), 7)) + value
    index = _NGINX_NAMED.get(name)
    if index is not None:
        return bytes((0x40 | index,)) + _nginx_string(value)
    return b"\x00" + _nginx_string(name) + _nginx_string(value)


_NGINX_FIELDS: dict[tuple[bytes, bytes], bytes] = {}


class NginxEncoder:
    """The header blocks nginx 1.22 writes (ngx_http_v2_header_filter), byte for byte in size: a
    dynamic table size update to 0 first after each SETTINGS_HEADER_TABLE_SIZE, then each field as
    nginx encodes it (its own with "incremental indexing" of a static name, the client's table being
    0 so nothing is kept; the rest literal, Huffman-coded where shorter). So the frames, and with
    them $bytes_sent, are as long as nginx's. Stateless on our side: fields are memoised."""

    def __init__(self) -> None:
        self._size_update = False  # nginx's table_update: set by each SETTINGS_HEADER_TABLE_SIZE

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._size_update = True

    def encode(self, headers: object, huffman: bool = True) -> bytes:
        fields = _NGINX_FIELDS
        parts = [b"\x20"] if self._size_update else []
        self._size_update = False
        for name, value in headers:  # type: ignore[attr-defined]
            key = (name, value)
            data = fields.get(key)
            if data is None:
                data = _nginx_field(name, value)
                if len(fields) >= _MEMO_MAX:  # Date and Content-Length values come and go
                    fields.clear()
                fields[key] = data
            parts.append(data)
        return b"".join(parts)


class _CountingTable(HeaderTable):
    """hpack's table, counting its changes (insertions, resizes) for CachingDecoder's memo."""

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    @HeaderTable.maxsize.setter  # type: ignore[attr-defined, untyped-decorator]
    def maxsize(self, newmax: int) -> None:
        self.generation += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class CachingDecoder(Decoder):
    """hpack's decoder with a per-connection memo of header blocks that leave the table unchanged."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size=max_header_list_size)
        self.header_table = _CountingTable()
        self._blocks: dict[bytes, tuple[int, list]] = {}  # type: ignore[type-arg]

    def decode(self, data: bytes, raw: bool = False) -> list:  # type: ignore[override, type-arg]
        table: _CountingTable = self.header_table  # type: ignore[assignment]
        key = bytes(data)
        hit = self._blocks.get(key)
        generation = table.generation
        if hit is not None and hit[0] == generation:
            return hit[1]
        headers = super().decode(data, raw)
        if table.generation == generation and len(self._blocks) < _BLOCKS_MAX:
            self._blocks[key] = (generation, headers)  # type: ignore[assignment]
        return headers  # type: ignore[return-value]
