"""Opcodes and close codes of RFC 6455, named once for the whole project."""

from enum import IntEnum


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005          # never sent on the wire: "the close frame had no code"
    ABNORMAL = 1006           # never sent on the wire: "the TCP connection dropped"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015      # never sent on the wire


def is_valid_close_code(code: int) -> bool:
    """Whether `code` may appear in a close frame (RFC 6455 §7.4, IANA registry).

    1000-1003 and 1007-1014 are defined codes; 3000-4999 belong to libraries and
    applications. Everything else (1004-1006, 1015, 1016-2999, <1000, >=5000) is a
    protocol error when received.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


DATA_OPCODES = frozenset((Opcode.TEXT, Opcode.BINARY))
CONTROL_OPCODES = frozenset((Opcode.CLOSE, Opcode.PING, Opcode.PONG))
KNOWN_OPCODES = DATA_OPCODES | CONTROL_OPCODES | {Opcode.CONTINUATION}
MAX_CONTROL_PAYLOAD = 125
