"""Static files on the WebSocket port (`[server] static_dir`): the HTTP answers, no I/O.

Theory of operation. With a static folder configured, the worker's `ServerProtocol` hands a
plain GET or HEAD (one without an `Upgrade` header) to the worker as an `EV_HTTP` event
instead of answering 400. The worker then:

1. turns the request target into a path relative to the folder with `resolve_target`
   (or gets a `HandshakeError`: 404 for anything that is not a plain file name under it);
2. looks the file up at the I/O edge (`workers/static.py`: `stat`, symlinks, the size cap);
3. builds the answer with `file_response` (200 with the body, 304, or HEAD without it).

Everything is decided from the request head and the file's metadata, so each rule is tested
here without sockets or files. The connection closes after the answer (`Connection: close`):
a page loads a handful of files, and keep-alive would make a static connection a second kind
of long-lived connection in the worker. No directory listing, ever: a folder answers 404
unless the target ends with "/" and the folder has an `index.html`.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

from lapps.ws.handshake import HandshakeError, Request

__all__ = ["FileMeta", "INDEX", "resolve_target", "content_type", "file_response", "http_error"]

INDEX = "index.html"

# What a browser needs for a page and its assets. A fixed table, not `mimetypes`: that one
# reads /etc/mime.types, so the answer would depend on the machine.
_TYPES = {
    "html": "text/html; charset=utf-8",
    "htm": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "mjs": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json",
    "map": "application/json",
    "txt": "text/plain; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "ts": "text/plain; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "ico": "image/x-icon",
    "woff": "font/woff",
    "woff2": "font/woff2",
    "wasm": "application/wasm",
}
_DEFAULT_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What the answer needs to know about a file: its size, its modification time in
    nanoseconds and its inode (the ETag changes when any of them does)."""

    size: int
    mtime_ns: int
    inode: int

    @property
    def etag(self) -> str:
        return f'"{self.inode:x}-{self.size:x}-{self.mtime_ns:x}"'

    @property
    def last_modified(self) -> str:
        return email.utils.formatdate(self.mtime_ns // 1_000_000_000, usegmt=True)


def resolve_target(target: str) -> tuple[str, ...]:
    """The file a request target names, as path segments under the static folder.

    The query string is dropped; each segment is percent-decoded on its own, so an encoded
    slash (`%2f`) or backslash can never join two segments. Refused with 404 (the answer
    says nothing about what exists outside): `.`/`..` segments, raw or encoded (`%2e%2e`),
    empty segments (`//`), dot files (`.git`, `.env`), NUL and control bytes, slashes or
    backslashes inside a segment, and names that are not UTF-8. A target that ends with "/"
    names that folder's `index.html`.
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    raw = path[1:].split("/") if path.startswith("/") else None
    if raw is None:
        raise HandshakeError(404, "not found")
    if raw[-1] == "":
        raw[-1] = INDEX
    parts: list[str] = []
    for segment in raw:
        try:
            name = unquote_to_bytes(segment).decode("utf-8")
        except UnicodeDecodeError:
            raise HandshakeError(404, "not found") from None
        if (not name or name.startswith(".") or "/" in name or "\\" in name
                or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)):
            raise HandshakeError(404, "not found")
        parts.append(name)
    return tuple(parts)


def content_type(name: str) -> str:
    """The Content-Type of a file, from its extension (lower case); octet-stream if unknown."""
    _, dot, ext = name.rpartition(".")
    return _TYPES.get(ext.lower(), _DEFAULT_TYPE) if dot else _DEFAULT_TYPE


def _not_modified(req: Request, meta: FileMeta) -> bool:
    """RFC 9110 §13.1: If-None-Match decides when present (weak comparison); else
    If-Modified-Since, at one-second resolution like Last-Modified."""
    inm = req.get_all("if-none-match")
    if inm:
        tags = [t.strip() for v in inm for t in v.split(",")]
        return "*" in tags or any(t.removeprefix("W/") == meta.etag for t in tags)
    ims = req.get("if-modified-since")
    if ims is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False   # an unparsable date is ignored (RFC 9110 §13.1.3)
    if since.tzinfo is None:
        return False
    return meta.mtime_ns // 1_000_000_000 <= int(since.timestamp())


def _response(status: int, headers: list[tuple[str, str]], body: bytes, head_only: bool) -> bytes:
    phrase = HTTPStatus(status).phrase
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
    head = f"HTTP/1.1 {status} {phrase}\r\n{lines}Connection: close\r\n\r\n".encode("latin-1")
    return head if head_only else head + body


def file_response(req: Request, name: str, meta: FileMeta, body: bytes | None) -> tuple[bytes, int]:
    """The answer for a file found under the folder: 304 when the client's copy is current,
    else 200 with `body` (the whole file; None for HEAD or a 304, whose bodies are empty).
    `name` is the file's name, for its Content-Type. Returns the answer and its status."""
    validators = [("ETag", meta.etag), ("Last-Modified", meta.last_modified),
                  ("Cache-Control", "no-cache")]
    if _not_modified(req, meta):
        return _response(304, validators, b"", True), 304
    headers = [("Content-Type", content_type(name)), ("Content-Length", str(meta.size)),
               *validators, ("X-Content-Type-Options", "nosniff")]
    if req.method == "HEAD":
        return _response(200, headers, b"", True), 200
    if body is None or len(body) != meta.size:
        raise ValueError("file_response: a GET needs the file's whole body")
    return _response(200, headers, body, False), 200


def http_error(req: Request, status: int, reason: str) -> bytes:
    """An error answer to a plain request: a short text body, none for HEAD (RFC 9110 §9.3.2:
    the same headers as the GET would get)."""
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}: {reason}\n".encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return _response(status, headers, body, req.method == "HEAD")
