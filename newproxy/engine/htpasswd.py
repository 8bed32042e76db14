"""auth_basic's password file and password schemes, as nginx 1.22 reads them (no IO but reading the file).

The file (ngx_http_auth_basic_handler): lines separated by LF; a line starting with "#" or CR is
skipped, as is an empty one; the first line that starts with the user name followed by ":" decides,
and its password field runs up to the next LF, CR or ":" (later fields are ignored). No whitespace is
trimmed. The file is read on every request, as nginx does; here the parsed table is kept while the
file's (inode, size, mtime) stay the same.

Schemes (ngx_crypt): ``$apr1$`` (Apache's MD5 crypt), ``{PLAIN}``, ``{SSHA}``, ``{SHA}``; anything
else goes to the C library's ``crypt_r`` (libxcrypt: DES, ``$1$``, ``$5$``, ``$6$``, ``$2b$``, ``$y$``...),
the very function nginx calls, loaded with ctypes (Python's ``crypt`` module is deprecated). Key and
hash are C strings to nginx: both end at the first NUL byte.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import os
import threading

_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def decode_base64(text: bytes) -> bytes | None:
    """ngx_decode_base64: up to the first "=", every character in the alphabet, a length that is not
    1 modulo 4; trailing bits are dropped. None where nginx reports an error."""
    end = text.find(b"=")
    if end >= 0:
        text = text[:end]
    if any(ch not in _B64 for ch in text) or len(text) % 4 == 1:
        return None
    # Python's decoder insists that the unused bits of the last character are zero only in strict mode.
    return base64.b64decode(text + b"=" * (-len(text) % 4))


def basic_credentials(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes] | None:
    """ngx_http_auth_basic_user: (user, password) from ``Authorization: Basic ...``, or None."""
    value = next((v for k, v in headers if len(k) == 13 and k.lower() == b"authorization"), None)
    if value is None or len(value) < 6 or value[:6].lower() != b"basic ":
        return None
    decoded = decode_base64(value[6:].lstrip(b" "))
    if not decoded:
        return None
    user, sep, password = decoded.partition(b":")
    if not user or not sep:
        return None
    return user, password


def _to64(value: int, count: int) -> bytes:
    out = bytearray()
    for _ in range(count):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return bytes(out)


def apr1(key: bytes, setting: bytes) -> bytes:
    """Apache's apr1: Poul-Henning Kamp's MD5 crypt with the "$apr1$" magic (ngx_crypt_apr1)."""
    salt = setting[6:]
    cut = salt.find(b"$")
    salt = salt[: min(8, cut if cut >= 0 else len(salt))]
    md5 = hashlib.md5(key + b"$apr1$" + salt)
    final = hashlib.md5(key + salt + key).digest()
    n = len(key)
    while n > 0:
        md5.update(final[: min(16, n)])
        n -= 16
    i = len(key)
    while i:
        md5.update(b"\0" if i & 1 else key[:1])
        i >>= 1
    final = md5.digest()
    for i in range(1000):
        ctx = hashlib.md5(key if i & 1 else final)
        if i % 3:
            ctx.update(salt)
        if i % 7:
            ctx.update(key)
        ctx.update(final if i & 1 else key)
        final = ctx.digest()
    f = final
    out = b"$apr1$" + salt + b"$"
    out += _to64((f[0] << 16) | (f[6] << 8) | f[12], 4)
    out += _to64((f[1] << 16) | (f[7] << 8) | f[13], 4)
    out += _to64((f[2] << 16) | (f[8] << 8) | f[14], 4)
    out += _to64((f[3] << 16) | (f[9] << 8) | f[15], 4)
    out += _to64((f[4] << 16) | (f[10] << 8) | f[5], 4)
    out += _to64(f[11], 2)
    return out


def _ssha(key: bytes, setting: bytes) -> bytes:
    """{SSHA}base64(SHA1(key salt) salt): the salt is what follows the first 20 decoded bytes."""
    decoded = decode_base64(setting[6:])
    salt = decoded[20:] if decoded is not None and len(decoded) >= 20 else b""
    return b"{SSHA}" + base64.b64encode(hashlib.sha1(key + salt).digest() + salt)


class _LibcCrypt:
    """crypt_r from libcrypt, with a per-thread struct crypt_data (libxcrypt's is 32768 bytes)."""

    _DATA_SIZE = 32768

    def __init__(self) -> None:
        name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
        self._fn = ctypes.CDLL(name).crypt_r
        self._fn.restype = ctypes.c_char_p
        self._fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
        self._local = threading.local()

    def __call__(self, key: bytes, setting: bytes) -> bytes | None:
        data = getattr(self._local, "data", None)
        if data is None:
            data = self._local.data = ctypes.create_string_buffer(self._DATA_SIZE)
        ctypes.memset(data, 0, 4)  # crypt_data.initialized = 0, as nginx does
        result: bytes | None = self._fn(key, setting, data)
        return result


_libc: _LibcCrypt | None = None


def crypt(key: bytes, setting: bytes) -> bytes | None:
    """ngx_crypt: the hash of ``key`` in the scheme (and with the salt) of ``setting``; None where
    nginx's crypt fails (a 500)."""
    global _libc
    key = key.split(b"\0", 1)[0]
    setting = setting.split(b"\0", 1)[0]
    if setting.startswith(b"$apr1$"):
        return apr1(key, setting)
    if setting.startswith(b"{PLAIN}"):
        return b"{PLAIN}" + key
    if setting.startswith(b"{SSHA}"):
        return _ssha(key, setting)
    if setting.startswith(b"{SHA}"):
        return b"{SHA}" + base64.b64encode(hashlib.sha1(key).digest())
    if _libc is None:
        _libc = _LibcCrypt()
    return _libc(key, setting)


def verify(password: bytes, entry: bytes) -> bool | None:
    """Whether ``password`` matches the file's ``entry`` (None: the scheme failed, a 500)."""
    encrypted = crypt(password, entry)
    if encrypted is None:
        return None
    return encrypted == entry.split(b"\0", 1)[0]


def parse_users(data: bytes) -> dict[bytes, bytes]:
    """user -> password field, the first line for a user winning (see the module docstring)."""
    users: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        if not line or line[0] in b"#\r":
            continue
        name, sep, rest = line.partition(b":")
        if not sep:
            continue
        end = len(rest)
        for stop in (b"\r", b":"):
            at = rest.find(stop)
            if 0 <= at < end:
                end = at
        users.setdefault(name, rest[:end])
    return users


class UserFiles:
    """Parsed user files by path, re-read when the file changes (nginx reads it on every request)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int], dict[bytes, bytes]]] = {}

    def lookup(self, path: str, user: bytes) -> bytes | None | int:
        """The password field for ``user``; None: no such user; 403: the file does not exist;
        500: it cannot be read (as ngx_open_file / ngx_read_file failures)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 403
        except OSError:
            return 500
        try:
            st = os.fstat(fd)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                users = cached[1]
            else:
                chunks = []
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                users = parse_users(b"".join(chunks))
                if len(self._cache) < 256:
                    self._cache[path] = (key, users)
        except OSError:
            return 500  # a directory (EISDIR on read), an IO error
        finally:
            os.close(fd)
        return users.get(user)
