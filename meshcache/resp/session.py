"""One RESP connection's state and how its commands run: the RESP analogue of the dispatcher.

:class:`Server` holds what every connection of a RESP port shares: the node's ``execute`` (the
coordinator: any key, forwarded to its owner when this node is not it), its op routes, the
argument limits, the counters, a wall clock and a ``random.Random``. It knows nothing about
sockets or trio. :class:`Session` is one connection: protocol version, namespace, client
name, id. ``Session.handle(argv)`` answers one command with the complete reply bytes, or with a
:class:`Pending` when an op must wait on another node; the port writes replies in command
order.

How a command runs (the handlers live in :mod:`meshcache.resp.commands`):

* a **direct** command maps onto one op: ``Session.call(op, args, reply)`` checks the
  arguments against the op's signature, runs it, and encodes the result with ``reply``; a
  result that must wait becomes a :class:`Pending` that encodes it once it is there.
* a **composed** command (FLUSHALL, INCRBYFLOAT) is an ``async def`` that awaits
  ``Session.op(...)`` for each op and returns the reply. It is driven here, not by trio: while
  its ops answer at once it runs to the end inside ``handle``. Its first op that must wait (a
  forward to the owner) turns the rest into a :class:`Pending` with ``fans_out`` set, so
  nothing after it on the connection starts before it is done. A handler awaits nothing but
  ``Session.op``. What Redis runs atomically on one key is one op (GETDEL, SPOP, ZPOPMIN, LPOP
  with a count, ...), never a sequence of them.

Errors: a refused op (:class:`~meshcache.errors.CommandError`) is answered with Redis's text
for its code (``WRONGTYPE Operation against a key holding the wrong kind of value``,
``ERR value is not an integer or out of range`` ...); a handler refuses with
:class:`RedisError`, which carries Redis's exact message. Nothing a client sends makes
``handle`` raise.
"""

from __future__ import annotations

import random
import weakref
from collections import Counter
from collections.abc import Callable, Coroutine, Generator, Mapping
from time import perf_counter_ns
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from meshcache.errors import CommandError, ErrorCode, NoAuthError, NoPermError, WrongPassError
from meshcache.resp.encoder import ENCODERS, RESP2, Encoder, error
from meshcache.wire.frame import HEADER, STATUS_OK
from meshcache.wire.ops import OPS, RELAYABLE, Limits, OpSpec, normalize_args
from meshcache.wire.pending import FailedOver, Later, Pending, Relayed

if TYPE_CHECKING:
    from meshcache.resp.commands import Command
    from meshcache.security.guard import Guard
    from meshcache.security.guard import Session as Identity

Executor = Callable[[str, str, list[Any]], Any]
Route = Callable[[str, list[Any]], Any]
Reply = Callable[[Any], bytes]

_unpackb = msgpack.unpackb
_HEADER_SIZE = HEADER.size


class Latency(Protocol):
    """Where an answered request's time is counted by op (the node's ``RequestLatency``): an
    op's histogram is taken once (:meth:`counts`); a request checks :attr:`rotate_at` against
    the clock it read and bumps one slot."""

    rotate_at: int

    def counts(self, op: str) -> list[int]: ...

    def rotate(self, now_ns: int) -> None: ...

    def observe(self, op: str, took_ns: int, now_ns: int) -> None: ...


class Counters(Protocol):
    """Where requests by op, op errors by code and request latency by op are counted (the
    node's ``NodeCounters``, shared with the data port)."""

    requests: Counter[str]
    errors: Counter[str]
    bad_input: Counter[str]

    @property
    def latency(self) -> Latency: ...


class RedisError(Exception):
    """A refusal with Redis's exact error text (``ERR syntax error``).

    ``kind`` names the bad input for counters (``syntax_error``, ``not_integer``, ...); None when
    the request was fine and the data or the cluster refused it.
    """

    def __init__(self, message: str, kind: str | None = "syntax_error") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


# Redis's text for refusals whose op-table code has a Redis counterpart.
_REDIS_TEXT = {
    ErrorCode.WRONGTYPE: "WRONGTYPE Operation against a key holding the wrong kind of value",
    ErrorCode.NOT_INTEGER: "ERR value is not an integer or out of range",
    ErrorCode.OVERFLOW: "ERR increment or decrement would overflow",
    ErrorCode.NOT_FLOAT: "ERR resulting score is not a number (NaN)",
    ErrorCode.OUT_OF_MEMORY: "OOM command not allowed when used memory > 'maxmemory'.",
}
# Redis's text for a code where one command words it its own way (by Redis command name).
_COMMAND_TEXT = {
    ("hincrby", ErrorCode.NOT_INTEGER): "ERR hash value is not an integer",
}
# Codes that Redis would report as a plain ERR; every other code is its own prefix
# (``UNAVAILABLE ...``, ``WRITE_FAILED ...``), as Redis prefixes errors with a code word.
_ERR_CODES = {
    ErrorCode.BAD_REQUEST,
    ErrorCode.UNKNOWN_OP,
    ErrorCode.WRONG_ARITY,
    ErrorCode.TOO_LARGE,
    ErrorCode.NO_SUCH_NAMESPACE,
    ErrorCode.INTERNAL,
}
# Refusals caused by the data met rather than by the request (not counted as bad input).
_DATA_CODES = {ErrorCode.WRONGTYPE, ErrorCode.OUT_OF_MEMORY, ErrorCode.NOT_INTEGER}

NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
#: What a connection may send before it authenticates on a node with users (Redis's
#: ``no-auth`` commands); everything else is answered ``NOAUTH``.
NO_AUTH_COMMANDS = frozenset({"auth", "hello", "quit", "reset"})


class Server:
    """What every connection of one RESP port shares.

    Args:
        execute: the node's data-op executor, ``execute(namespace, op, args)`` (the
            coordinator's: it forwards to the key's owner); returns the result or a coroutine.
        routes: the node's op routes (``Routes.table()``): ``INFO``, ``NS_LIST`` are read.
        limits: key, value and argument-count limits, checked before an op runs.
        counters: the node's counters of ops run and op errors (shared with the data port);
            the port's own figures are :attr:`calls` and :attr:`refused`.
        wall_clock: seconds since the epoch (EXPIREAT, TIME).
        rng: randomness for SPOP and SRANDMEMBER.
        node_id: this node, for INFO and HELLO.
        port: the RESP port's number, for INFO.
        connections: how many RESP connections are open now, for INFO.
        guard: the node's users and permissions (the data port's
            :class:`~meshcache.security.guard.Guard`): each connection gets an identity from
            it, ``AUTH`` checks passwords with it, and every op a command runs is checked
            against the op table's permission as on the data port. None: everything allowed
            (a port with no node behind it, in tests).
        max_reply_bytes: the most bytes a reply whose size the request chooses (SRANDMEMBER
            with a negative count) may hold; the port passes its ``max_buffered_bytes``.
    """

    def __init__(
        self,
        *,
        execute: Executor,
        routes: Mapping[str, Route],
        limits: Limits,
        counters: Counters,
        wall_clock: Callable[[], float],
        rng: random.Random | None = None,
        node_id: str = "",
        port: int = 0,
        connections: Callable[[], int] = lambda: 0,
        guard: Guard | None = None,
        max_reply_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        from meshcache.resp.commands import COMMANDS

        self.execute = execute
        self.guard = guard
        self.routes = routes
        # One lookup per op run gives its spec, its node route (None: a data op), its latency
        # histogram and whether a read of it may be relayed, as the data port's dispatcher has
        # them.
        self.latency = latency = counters.latency
        self.ops: dict[str, tuple[OpSpec, Route | None, list[int], bool]] = {
            name: (
                spec,
                routes.get(name),
                latency.counts(name),
                name in RELAYABLE and name not in routes,
            )
            for name, spec in OPS.items()
        }
        self.limits = limits
        #: The largest reply a command may build beyond what the data holds (SRANDMEMBER with
        #: a negative count repeats members): bytes, and ``limits.max_args`` elements.
        self.max_reply_bytes = max_reply_bytes
        self.counters = counters
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()
        self.node_id = node_id
        self.port = port
        self.connections = connections
        self.commands: Mapping[bytes, Command] = COMMANDS
        # Looked up by the name as sent first: clients send upper case (redis-py,
        # redis-benchmark) or lower case (redis-cli as typed); other spellings are lowered.
        self.lookup: dict[bytes, Command] = {
            **COMMANDS,
            **{name.upper(): c for name, c in COMMANDS.items()},
        }
        #: Error replies sent on every connection (INFO's ``total_error_replies``).
        self.error_replies = 0
        #: Commands run, by Redis name (``get``, ``client``, ``config``); unknown commands and
        #: commands with the wrong number of arguments are not run: they are in ``refused``.
        self.calls: Counter[str] = Counter()
        #: Bad input, by kind: ``unknown_command``, ``wrong_arity``, ``syntax_error``,
        #: ``not_integer``, ``protocol_<kind>`` (framing lost), ``too_many_connections`` ...
        self.refused: Counter[str] = Counter()
        #: The ops run and error replies INFO's ``stats`` counts from (CONFIG RESETSTAT).
        self.stats_base = (0, 0)
        self._next_id = 0
        #: The open connections by id (CLIENT LIST); a session leaves with its connection.
        self.sessions: weakref.WeakValueDictionary[int, Session] = weakref.WeakValueDictionary()
        #: Runs a read as ``execute`` does, but may relay it (a node wires its coordinator's
        #: ``execute`` with ``relay=True``): a read of a key another node coordinates is then
        #: passed on to that node as a data-port request, and answered as a
        #: :class:`~meshcache.wire.pending.Relayed` that settles with the owner's response
        #: frame. None: every read through ``execute``.
        self.relay: Executor | None = None

    def session(self, addr: str = "", laddr: str = "", host: str = "") -> Session:
        """The state of a new connection (RESP2, namespace ``default``, a new client id, not
        authenticated); ``addr`` and ``laddr`` are the client's and the port's addresses,
        ``host`` the client's IP address (failed ``AUTH``\\ s are counted per address)."""
        self._next_id += 1
        session = Session(self, self._next_id, addr, laddr, host)
        self.sessions[session.id] = session
        return session


class Session:
    """One connection: its protocol version, namespace, name and id, and its commands."""

    __slots__ = (
        "__weakref__",
        "addr",
        "closing",
        "command",
        "db",
        "enc",
        "id",
        "ident",
        "laddr",
        "lib_name",
        "lib_ver",
        "name",
        "namespace",
        "server",
    )

    def __init__(
        self, server: Server, client_id: int, addr: str = "", laddr: str = "", host: str = ""
    ) -> None:
        self.server = server
        #: Who the connection is (the data port's session of the node's guard), or None when
        #: the port has no guard.
        self.ident: Identity | None = (
            None if server.guard is None else server.guard.session(host, port="resp")
        )
        #: The command being run, by its Redis name (for NOPERM's text).
        self.command = ""
        self.id = client_id
        #: The client's address and the port's (``host:port``), for CLIENT INFO.
        self.addr = addr
        self.laddr = laddr
        self.enc: Encoder = RESP2
        self.namespace = "default"
        self.db: int | None = 0  # the database index SELECT chose; None for a namespace name
        self.name: bytes | None = None
        self.lib_name: bytes | None = None
        self.lib_ver: bytes | None = None
        #: Set by QUIT: the connection closes once this command's reply is written.
        self.closing = False

    @property
    def protocol(self) -> int:
        return self.enc.protocol

    def set_protocol(self, protocol: int) -> None:
        self.enc = ENCODERS[protocol]

    def reset(self) -> None:
        """RESET: back to a new connection's state, keeping the id (and, as Redis does, no
        longer authenticated)."""
        self.enc = RESP2
        self.namespace = "default"
        self.db = 0
        self.name = None
        if self.ident is not None:
            self.ident.become(self.ident.guard.anonymous())

    # --- one command ------------------------------------------------------------------------

    def handle(self, argv: list[bytes]) -> bytes | Pending:
        """Answer one command (``argv[0]`` is its name) with its reply or a pending reply."""
        lookup = self.server.lookup
        cmd = lookup.get(argv[0])
        if cmd is None:
            cmd = lookup.get(argv[0].lower())
            if cmd is None:
                return self.refuse(unknown_command(argv))
        n = len(argv)
        arity = cmd.arity
        if (n != arity) if arity >= 0 else (n < -arity):
            return self.refuse(wrong_arity(cmd.name))
        ident = self.ident
        if (
            ident is not None
            and ident.guard.users
            and ident.grant.who is None
            and cmd.name not in NO_AUTH_COMMANDS
        ):
            return self.refuse(self.noauth())
        self.command = cmd.name
        self.server.calls[cmd.name] += 1
        try:
            if cmd.composed:
                return self.drive(cmd.run(self, argv))
            result: bytes | Pending = cmd.run(self, argv)
            return result
        except RedisError as exc:
            return self.refuse(exc)
        except CommandError as exc:
            return self.command_error(exc, cmd.name)
        except Exception as exc:  # a bug here: the client gets an error, the node goes on
            return self.internal(exc)

    def refuse(self, exc: RedisError) -> bytes:
        self.server.error_replies += 1
        if exc.kind is not None:
            self.server.refused[exc.kind] += 1
        return error(exc.message)

    def command_error(self, exc: CommandError, command: str = "") -> bytes:
        """Redis's error reply for an op's refusal while running ``command`` (its Redis name),
        counted by code (and as bad input unless the data caused it)."""
        code = exc.code
        self.server.error_replies += 1
        counters = self.server.counters
        counters.errors[str(code)] += 1
        if code is ErrorCode.WRONGPASS:  # counted as bad input, as the data port counts it
            counters.bad_input["wrongpass"] += 1
        if code not in _DATA_CODES:
            self.server.refused[str(code).lower()] += 1
        text = _COMMAND_TEXT.get((command, code)) or _REDIS_TEXT.get(code)
        if text is None:
            prefix = "ERR" if code in _ERR_CODES else str(code)
            text = f"{prefix} {exc.message}" if exc.message else prefix
        return error(text)

    # --- who may run what ----------------------------------------------------------------------

    def noauth(self, text: str = NOAUTH) -> RedisError:
        """The refusal of a command sent before ``AUTH`` on a node with users, counted as the
        data port counts it (``meshcache_auth{outcome="noauth"}``, ``NOAUTH`` errors and bad
        input)."""
        if self.ident is not None:
            self.ident.guard.stats["noauth"] += 1
        self._count_refusal(ErrorCode.NOAUTH)
        return RedisError(text, "noauth")

    def _count_refusal(self, code: ErrorCode) -> None:
        counters = self.server.counters
        counters.errors[code.value] += 1
        counters.bad_input[code.value.lower()] += 1

    def gate(self, spec: OpSpec, namespace: str) -> None:
        """Let an op that is not in the identity's ``allowed`` set run, or refuse it with
        Redis's ``NOAUTH`` / ``NOPERM`` text; the guard decides and counts, as on the data
        port (a namespace-limited user's data op in one of its namespaces runs)."""
        ident = self.ident
        assert ident is not None
        try:
            ident.gate(spec, namespace, None)
        except NoAuthError:
            self._count_refusal(ErrorCode.NOAUTH)
            raise RedisError(NOAUTH, "noauth") from None
        except NoPermError:
            self._count_refusal(ErrorCode.NOPERM)
            grant = ident.grant
            who = "default" if grant.who is None else grant.who
            if spec.permission in grant.permissions:
                raise RedisError(
                    f"NOPERM User {who} has no permissions to run the '{self.command}' command "
                    f"in namespace '{namespace[:64]}'",
                    "noperm",
                ) from None
            raise RedisError(
                f"NOPERM User {who} has no permissions to run the '{self.command}' command: "
                f"it needs the '{spec.permission.value}' permission",
                "noperm",
            ) from None

    def authenticate(self, user: bytes, password: bytes, then: Callable[[], bytes]) -> Pending:
        """``AUTH user password`` through the node's guard (scrypt off the event loop, the
        per-address slow-down after failures, every outcome counted), then ``then()``'s reply;
        ``WRONGPASS`` when it fails, leaving the connection as it was. The commands after it
        wait until it is answered.

        Raises:
            CommandError: a user name or password that is not UTF-8 text.
        """
        ident = self.ident
        assert ident is not None
        check = ident.gate(OPS["AUTH"], self.namespace, [user, password])
        assert check is not None
        return Pending(self._authenticated(check, then), fans_out=True)

    async def _authenticated(
        self, check: Coroutine[Any, Any, str], then: Callable[[], bytes]
    ) -> bytes:
        try:
            await check
        except WrongPassError:
            self._count_refusal(ErrorCode.WRONGPASS)
            return self.refuse(RedisError(WRONGPASS, "wrongpass"))
        except CommandError as exc:
            return self.command_error(exc)
        except Exception as exc:
            return self.internal(exc)
        try:
            return then()
        except RedisError as exc:
            return self.refuse(exc)

    def internal(self, exc: Exception) -> bytes:
        self.server.error_replies += 1
        self.server.counters.errors[ErrorCode.INTERNAL.value] += 1
        return error(f"ERR internal error: {type(exc).__name__}")

    # --- direct commands: one op ------------------------------------------------------------

    def call(self, op: str, args: list[Any], reply: Reply) -> bytes | Pending:
        """Run ``op`` on this connection's namespace; encode its result with ``reply``.

        Raises:
            CommandError: the arguments break the op's signature or limits, or the op refused.
        """
        started = perf_counter_ns()
        server = self.server
        spec, route, histogram, relayable = server.ops[op]
        ident = self.ident
        if ident is not None and op not in ident.allowed:
            self.gate(spec, self.namespace)
        args = normalize_args(spec, args, server.limits)
        if route is not None:  # a node op (the op table names its handler), as the dispatcher
            result = route(self.namespace, args)
        elif relayable and server.relay is not None:
            result = server.relay(self.namespace, op, args)
            if type(result) is Relayed:  # passed on to the key's owner: its answer is a frame
                return Pending(None, later=result, finish=self._relayed(op, reply, started))
        else:
            result = server.execute(self.namespace, op, args)
        if type(result) is CoroutineType:
            return self._pending(spec, args, self._finish(op, self.command, result, reply, started))
        if type(result) is Later:  # a forward submitted without a task: one key
            finish = self._later(op, reply, started)
            return Pending(None, key=(self.namespace, args[0]), later=result, finish=finish)
        server.counters.requests[op] += 1  # _count, inlined on the path of every answer at once
        now = perf_counter_ns()
        if now >= server.latency.rotate_at:
            server.latency.rotate(now)
        took = now - started
        histogram[(took * took).bit_length()] += 1
        return reply(result)

    def _later(
        self, op: str, reply: Reply, started: int
    ) -> Callable[[Any, BaseException | None], bytes]:
        """What makes the reply bytes of a result that arrives later, as :meth:`_finish` makes
        them: :attr:`Pending.finish`, called once, from the callback that settles it."""
        command = self.command

        def settled(value: Any, error: BaseException | None) -> bytes:
            if error is None:
                self._count(op, started)
                try:
                    out = reply(value)
                except RedisError as exc:
                    out = self.refuse(exc)
                except Exception as exc:
                    out = self.internal(exc)
            elif isinstance(error, CommandError):
                out = self.command_error(error, command)
            elif isinstance(error, RedisError):
                out = self.refuse(error)
            elif isinstance(error, Exception):
                out = self.internal(error)
            else:
                out = self.internal(RuntimeError(type(error).__name__))
            return out

        return settled

    def _relayed(
        self, op: str, reply: Reply, started: int
    ) -> Callable[[Any, BaseException | None], bytes]:
        """:meth:`_later` for a relayed read: the owner's response frame read first (or the
        value of a read forwarded again, :class:`~meshcache.wire.pending.FailedOver`)."""
        settled = self._later(op, reply, started)

        def relayed(value: Any, error: BaseException | None) -> bytes:
            if error is None:
                if type(value) is FailedOver:
                    value = value.value
                else:
                    try:
                        answer = _unpackb(value[_HEADER_SIZE:], raw=False, strict_map_key=False)
                        if answer[1] != STATUS_OK:
                            code, message = answer[2]
                            return settled(None, CommandError(code, message))
                        value = answer[2]
                    except CommandError as exc:
                        return settled(None, exc)
                    except Exception:
                        return settled(None, RuntimeError("a relayed answer is not a frame"))
            return settled(value, error)

        return relayed

    def _count(self, op: str, started: int) -> None:
        """One answered request of ``op`` that started at ``started`` (perf_counter_ns)."""
        counters = self.server.counters
        counters.requests[op] += 1
        now = perf_counter_ns()
        counters.latency.observe(op, now - started, now)

    def route(self, op: str, args: list[Any]) -> Any:
        """A node op's route (INFO, NS_LIST): its result; raises what the route raises."""
        route = self.server.routes.get(op)
        if route is None:
            raise RedisError(f"ERR {op} is not served by this node", None)
        ident = self.ident
        if ident is not None and op not in ident.allowed:
            self.gate(OPS[op], self.namespace)
        return route(self.namespace, normalize_args(OPS[op], args, self.server.limits))

    def _pending(
        self, spec: OpSpec, args: list[Any], answer: Coroutine[Any, Any, bytes]
    ) -> Pending:
        if not spec.keyed or (not spec.fixed and len(args) > len(spec.repeat)):
            return Pending(answer, fans_out=True)
        return Pending(answer, key=(self.namespace, args[0]))

    async def _finish(
        self,
        op: str,
        command: str,
        pending: Coroutine[Any, Any, Any],
        reply: Reply,
        started: int,
    ) -> bytes:
        try:
            result = await pending
        except CommandError as exc:
            return self.command_error(exc, command)
        except RedisError as exc:
            return self.refuse(exc)
        except Exception as exc:
            return self.internal(exc)
        self._count(op, started)
        try:
            return reply(result)
        except RedisError as exc:
            return self.refuse(exc)
        except Exception as exc:
            return self.internal(exc)

    # --- composed commands: a sequence of ops -----------------------------------------------

    def op(self, op: str, args: list[Any], *, namespace: str | None = None) -> _OpCall:
        """Await it in a composed handler: the op's result (raises its CommandError)."""
        return _OpCall(self, op, args, namespace)

    def _run_op(self, op: str, args: list[Any], namespace: str | None) -> Any:
        ident = self.ident
        if ident is not None and op not in ident.allowed:
            self.gate(OPS[op], namespace or self.namespace)
        args = normalize_args(OPS[op], args, self.server.limits)
        route = self.server.routes.get(op)
        if route is not None:
            return route(namespace or self.namespace, args)
        return self.server.execute(namespace or self.namespace, op, args)

    def drive(self, coro: Coroutine[Any, Any, bytes]) -> bytes | Pending:
        """Run a composed handler while its ops answer at once; hand the rest to a task."""
        try:
            waiting = coro.send(None)
        except StopIteration as stop:
            done: bytes = stop.value
            return done
        return Pending(self._resume(coro, waiting), fans_out=True)

    async def _resume(self, coro: Coroutine[Any, Any, bytes], waiting: Any) -> bytes:
        try:
            while True:
                try:
                    value = await waiting
                except BaseException as exc:  # the op's refusal, or a cancellation
                    waiting = coro.throw(exc)
                else:
                    waiting = coro.send(value)
        except StopIteration as stop:
            done: bytes = stop.value
            return done
        except RedisError as exc:
            return self.refuse(exc)
        except CommandError as exc:
            return self.command_error(exc)
        except Exception as exc:
            return self.internal(exc)
        finally:
            coro.close()


class _OpCall:
    """One op of a composed handler (see the module docstring)."""

    __slots__ = ("args", "namespace", "op", "session")

    def __init__(self, session: Session, op: str, args: list[Any], namespace: str | None) -> None:
        self.session = session
        self.op = op
        self.args = args
        self.namespace = namespace

    def __await__(self) -> Generator[Any, Any, Any]:
        session = self.session
        result = session._run_op(self.op, self.args, self.namespace)
        if type(result) is Later:
            result = result.wait()
        if type(result) is CoroutineType:
            result = yield result
        session.server.counters.requests[self.op] += 1
        return result


def unknown_command(argv: list[bytes]) -> RedisError:
    """Redis's refusal of a command it does not have, word for word."""
    args = ""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += f"'{_text(arg)[: 128 - len(args)]}' "
    return RedisError(
        f"ERR unknown command '{_text(argv[0])[:128]}', with args beginning with: {args}",
        "unknown_command",
    )


def wrong_arity(name: str) -> RedisError:
    return RedisError(f"ERR wrong number of arguments for '{name}' command", "wrong_arity")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


__all__ = [
    "NOAUTH",
    "NO_AUTH_COMMANDS",
    "WRONGPASS",
    "Counters",
    "RedisError",
    "Server",
    "Session",
    "unknown_command",
    "wrong_arity",
]
