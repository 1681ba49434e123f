"""The exception hierarchy: every error meshcache raises is a :class:`MeshcacheError`.

Errors say whose fault they were, the way h11 does:

* :class:`CommandError` — a request was refused. The store raises it on the node; the node
  sends it as an error frame carrying a stable :class:`ErrorCode`; the client raises the same
  class again, so ``except meshcache.WrongTypeError`` works on both sides of the wire.
* :class:`LocalProtocolError` — *we* were about to send something the protocol forbids.
* :class:`RemoteProtocolError` — the peer sent bytes that break the protocol.
* :class:`MeshcacheConnectionError` / :class:`MeshcacheTimeout` — the transport failed.
* :class:`ConfigError` — bad settings; the CLI prints it as one line and exits 2.

Refusals of the config plane (ring, namespace and voter changes) are :class:`CommandError`
subclasses too, rooted at :class:`ControlError`. Two families, which callers must tell apart:

* the change was **refused** and will never apply: :class:`InvalidCommandError`,
  :class:`VersionConflictError`, :class:`NoSuchMemberError`, :class:`NamespaceExistsError`,
  :class:`InvalidTransitionError`, and :class:`NoSuchNamespaceError`;
* the outcome is **unknown**: :class:`ProposalTimeoutError` and its subclass
  :class:`NoQuorumError`. The change may still commit later; because every command is
  compare-and-set on the version it was based on, it can then only apply on that version.
  Re-read the config before retrying.

They are answers from a node, not transport failures: a ``ProposalTimeoutError`` is not a
:class:`MeshcacheTimeout` and an ``InvalidCommandError`` is not a :class:`ConfigError`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """Stable error codes carried in error frames (see docs/protocol.md)."""

    BAD_REQUEST = "BAD_REQUEST"
    UNKNOWN_OP = "UNKNOWN_OP"
    WRONG_ARITY = "WRONG_ARITY"
    WRONGTYPE = "WRONGTYPE"
    NOT_INTEGER = "NOT_INTEGER"
    NOT_FLOAT = "NOT_FLOAT"
    OVERFLOW = "OVERFLOW"
    TOO_LARGE = "TOO_LARGE"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NO_SUCH_NAMESPACE = "NO_SUCH_NAMESPACE"
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    TLS_REQUIRED = "TLS_REQUIRED"
    INTERNAL = "INTERNAL"
    # The config plane (meshcache/control): a change that could not be made.
    CONTROL = "CONTROL"
    INVALID_COMMAND = "INVALID_COMMAND"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    NO_SUCH_MEMBER = "NO_SUCH_MEMBER"
    NAMESPACE_EXISTS = "NAMESPACE_EXISTS"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    NOT_A_VOTER = "NOT_A_VOTER"
    NO_QUORUM = "NO_QUORUM"
    PROPOSAL_TIMEOUT = "PROPOSAL_TIMEOUT"
    STALE_CONFIG = "STALE_CONFIG"
    NO_VOTERS = "NO_VOTERS"
    # data plane (mesh)
    UNAVAILABLE = "UNAVAILABLE"
    WRITE_FAILED = "WRITE_FAILED"
    NOT_OWNER = "NOT_OWNER"
    # who may do what (docs/security.md)
    NOAUTH = "NOAUTH"
    NOPERM = "NOPERM"
    WRONGPASS = "WRONGPASS"
    # the loader plane (read-through from a database)
    LOADER_UNAVAILABLE = "LOADER_UNAVAILABLE"


class MeshcacheError(Exception):
    """Root of every exception meshcache raises."""


class ConfigError(MeshcacheError):
    """A setting is missing, malformed or out of range."""


class LocalProtocolError(MeshcacheError):
    """This side tried to do something the protocol does not allow."""


class RemoteProtocolError(MeshcacheError):
    """The peer sent something the protocol does not allow."""


class MeshcacheConnectionError(MeshcacheError):
    """The connection to a node could not be made or was lost."""


class MeshcacheTimeout(MeshcacheError, TimeoutError):
    """A request got no answer in time; also a builtin :class:`TimeoutError`, so
    ``except TimeoutError`` catches it as it catches other libraries' timeouts."""


class CommandError(MeshcacheError):
    """A request was refused; ``code`` says why in a way programs can rely on.

    ``CommandError(code, message)`` builds the subclass registered for ``code`` when one exists,
    so callers may catch either the base class or the specific one (the client decodes every
    error frame this way).

    A subclass is built with keywords (``NoSuchMemberError(message="...")``); giving it a code
    other than its own raises ``TypeError``. An instance pickles with its extra attributes;
    only ``code`` and ``message`` cross the wire.
    """

    code: ErrorCode = ErrorCode.INTERNAL
    _by_code: ClassVar[dict[str, type[CommandError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:  # a class that only groups others keeps no code of its own
            CommandError._by_code[cls.code] = cls

    def __new__(
        cls, code: str | ErrorCode | None = None, message: str = "", **_: object
    ) -> CommandError:
        target = cls
        if cls is CommandError and code is not None:
            target = CommandError._by_code.get(str(code), CommandError)
        return super().__new__(target)

    def __init__(self, code: str | ErrorCode | None = None, message: str = "") -> None:
        own = type(self).code
        if type(self) is not CommandError and code is not None and str(code) != own:
            raise TypeError(f"{type(self).__name__} carries {own}; give its text as message=")
        if code is not None:
            try:
                self.code = ErrorCode(code)
            except ValueError:
                # A newer server may send a code this client does not know yet; keep it as text.
                self.code = code  # type: ignore[assignment]
        self.message = message
        super().__init__(f"{self.code}: {message}" if message else str(self.code))

    def __reduce__(self) -> tuple[object, ...]:
        extra = {k: v for k, v in self.__dict__.items() if k not in ("code", "message")}
        return (CommandError, (str(self.code), self.message), extra or None)


class BadRequestError(CommandError):
    code = ErrorCode.BAD_REQUEST


class UnknownOpError(CommandError):
    code = ErrorCode.UNKNOWN_OP


class WrongArityError(CommandError):
    code = ErrorCode.WRONG_ARITY


class WrongTypeError(CommandError):
    code = ErrorCode.WRONGTYPE


class NotIntegerError(CommandError):
    code = ErrorCode.NOT_INTEGER


class NotFloatError(CommandError):
    code = ErrorCode.NOT_FLOAT


class OverflowCommandError(CommandError):
    code = ErrorCode.OVERFLOW


class TooLargeError(CommandError):
    code = ErrorCode.TOO_LARGE


class OutOfMemoryError(CommandError):
    code = ErrorCode.OUT_OF_MEMORY


class NoSuchNamespaceError(CommandError):
    code = ErrorCode.NO_SUCH_NAMESPACE


class TooManyConnectionsError(CommandError):
    code = ErrorCode.TOO_MANY_CONNECTIONS


class InternalError(CommandError):
    code = ErrorCode.INTERNAL


class UnavailableError(CommandError):
    """No owner of the key could be reached (all are down or unreachable from this node)."""

    code = ErrorCode.UNAVAILABLE


class WriteFailedError(CommandError):
    """A write did not reach its consistency level in time; it may still have been applied."""

    code = ErrorCode.WRITE_FAILED


class NotOwnerError(CommandError):
    """A node-to-node request about keys the receiver does not own (by its ring)."""

    code = ErrorCode.NOT_OWNER


class LoaderUnavailableError(CommandError):
    """A miss in a read-through namespace could not be loaded from its source: the source is
    down or refused the query, the load timed out, or its circuit breaker is open."""

    code = ErrorCode.LOADER_UNAVAILABLE


class NoAuthError(CommandError):
    """The node has users and this connection has not authenticated (send ``AUTH`` first)."""

    code = ErrorCode.NOAUTH


class NoPermError(CommandError):
    """The connection's user lacks the permission the op needs (the message names it)."""

    code = ErrorCode.NOPERM


class WrongPassError(CommandError):
    """``AUTH`` named an unknown user or a wrong password (the node does not say which)."""

    code = ErrorCode.WRONGPASS


# --- the config plane ---------------------------------------------------------------------------


class ControlError(CommandError):
    """Root of the config plane's refusals; raised as itself for one that has no finer code
    (pysyncobj denied a voter change because another one is not committed yet)."""

    code = ErrorCode.CONTROL


class InvalidCommandError(ControlError):
    """The command is malformed or names an invalid value (policy, member, state, name)."""

    code = ErrorCode.INVALID_COMMAND


class VersionConflictError(ControlError):
    """The command was based on a config version that is no longer current.

    Attributes:
        expected: the version the command was based on (``None`` when it came over the wire;
            the message names it).
        actual: the version it met when it was applied (likewise).
    """

    code = ErrorCode.VERSION_CONFLICT

    def __init__(
        self,
        code: str | ErrorCode | None = None,
        message: str = "",
        *,
        expected: int | None = None,
        actual: int | None = None,
    ) -> None:
        self.expected = expected
        self.actual = actual
        if not message and expected is not None and actual is not None:
            message = (
                f"config changed: the command was based on version {expected}, the config is at "
                f"version {actual}; re-read the config and retry"
            )
        super().__init__(code, message)


class NoSuchMemberError(ControlError):
    """The command names a ring member that does not exist."""

    code = ErrorCode.NO_SUCH_MEMBER


class NamespaceExistsError(ControlError):
    """``create_namespace`` named a namespace that already exists."""

    code = ErrorCode.NAMESPACE_EXISTS


class InvalidTransitionError(ControlError):
    """A member state change that the ring's state table does not allow."""

    code = ErrorCode.INVALID_TRANSITION


class NotAVoterError(ControlError):
    """This node is not a Raft voter; forward the change to a node that is."""

    code = ErrorCode.NOT_A_VOTER


class NoVotersError(ControlError):
    """The node knows no config voter to send the change to."""

    code = ErrorCode.NO_VOTERS


class ProposalTimeoutError(ControlError):
    """The change was not confirmed in time; it may still commit later (on its base version)."""

    code = ErrorCode.PROPOSAL_TIMEOUT


class NoQuorumError(ProposalTimeoutError):
    """No majority of voters is reachable, so no change can commit now.

    Data reads and writes keep working; only configuration changes wait for a quorum.
    """

    code = ErrorCode.NO_QUORUM


class StaleConfigError(ControlError):
    """A config or ring version that is not the one expected: a pulled config that is not
    newer than the one held, or a peer on another ring version."""

    code = ErrorCode.STALE_CONFIG
