"""The I/O edge of static files (`[server] static_dir`): find the file, read it, answer.

The answers themselves are built by `lapps.static` (pure); this module only touches the
file system. Files are read in full, at once, into the connection's output buffer, and the
worker's loop sends them like any other bytes (non-blocking, EPOLLOUT when the peer is
slow), so a slow reader never holds the loop. The read itself is a local `read()` of at
most `max_static_file_size` bytes (1 MiB by default; the demo's files are a few KiB), which
is the only time the loop spends on a file. Bigger files answer 404, like missing ones:
this is a page server for the clients of the WebSocket services, not a file server.

Symlinks are followed only while they stay inside the folder: the real path of the file
must lie under the real path of the folder, checked after every link is resolved.
"""

from __future__ import annotations

import logging
import os
import stat

from lapps.static import FileMeta, file_response, http_error, resolve_target
from lapps.ws.handshake import HandshakeError, Request


class StaticFiles:
    """Answers plain GET/HEAD requests from one folder. Made once per worker."""

    def __init__(self, root: str, max_size: int, log: logging.Logger) -> None:
        self.root = os.path.realpath(root)
        self.max_size = max_size
        self.log = log
        self.too_big: set[str] = set()   # files already warned about: one line each, not one per request

    def answer(self, req: Request) -> tuple[bytes, int]:
        """The whole HTTP answer to `req` and its status. Never raises for a request: what
        the file system says (missing, a folder, no permission, a link out) becomes 404."""
        try:
            parts = resolve_target(req.target)
            path, meta = self._find(parts)
            if meta.size > self.max_size:
                if path not in self.too_big:
                    self.too_big.add(path)
                    self.log.warning("static file %s is %d bytes, over [limits] max_static_file_size (%d): 404",
                                     path, meta.size, self.max_size)
                raise HandshakeError(404, "not found")
            body = None
            if req.method == "GET":
                body = self._read(path, meta)
        except HandshakeError as e:
            return http_error(req, e.status, e.reason), e.status
        return file_response(req, parts[-1], meta, body)

    def _find(self, parts: tuple[str, ...]) -> tuple[str, FileMeta]:
        """The real path and metadata of a regular file under the folder, or HandshakeError(404)."""
        real = os.path.realpath(os.path.join(self.root, *parts))
        if os.path.commonpath((self.root, real)) != self.root:
            raise HandshakeError(404, "not found")    # a symlink that leads out of the folder
        try:
            st = os.stat(real)
        except OSError:
            raise HandshakeError(404, "not found") from None
        if not stat.S_ISREG(st.st_mode):
            raise HandshakeError(404, "not found")    # a folder (no listing), a device, a fifo
        return real, FileMeta(st.st_size, st.st_mtime_ns, st.st_ino)

    def _read(self, path: str, meta: FileMeta) -> bytes:
        """The file's bytes, opened without following a last-moment symlink swap, and only if
        it is still the file that was stat'ed (else 404: it changed under us)."""
        try:   # O_NONBLOCK: a fifo swapped in after the stat cannot hang the loop in open()
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            raise HandshakeError(404, "not found") from None
        try:
            st = os.fstat(fd)
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (meta.inode, meta.size, meta.mtime_ns) \
                    or not stat.S_ISREG(st.st_mode):
                raise HandshakeError(404, "not found")
            chunks = []
            left = meta.size
            while left:
                chunk = os.read(fd, left)
                if not chunk:
                    raise HandshakeError(404, "not found")   # truncated meanwhile
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        except OSError:
            raise HandshakeError(404, "not found") from None
        finally:
            os.close(fd)
