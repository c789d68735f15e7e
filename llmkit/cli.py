"""The ``llmkit`` command line: ``chat``, ``serve``, ``backends`` and ``providers``.

    llmkit chat "What is the capital of France?"        # one-shot, streamed
    echo "Summarise this" | llmkit chat -m openai:gpt-4o-mini
    llmkit chat                                          # interactive session with history
    llmkit serve hf:smollm2 --port 8000                  # OpenAI-compatible server
    llmkit backends                                      # what is registered and installed
    llmkit providers                                     # services reachable by name

Errors are one line on stderr: usage mistakes exit with 2, failures at run time with 1
(``--debug`` shows the traceback instead). Only the standard library is used here; the
server stack is imported by ``llmkit serve`` alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from . import __version__
from .backends.base import SupportsLoad
from .client import AsyncClient, Client
from .config import ENV_CONFIG, LOCAL_CONFIG
from .errors import BackendUnavailable, ConfigError, LLMError
from .registry import available_backends, is_installed
from .types import ChatResponse, Message, ReasoningDelta

__all__ = ["build_parser", "main"]

logger = logging.getLogger("llmkit.cli")

ENV_SERVER_API_KEY = "LLMKIT_SERVER_API_KEY"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_QUIT_COMMANDS = frozenset({"exit", "quit", "/exit", "/quit", ":q"})


class UsageError(Exception):
    """A mistake in the command line itself (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------------- parser


NumberT = TypeVar("NumberT", int, float)


def _number(
    convert: Callable[[str], NumberT], what: str, ok: Callable[[NumberT], bool], rule: str
) -> Callable[[str], NumberT]:
    """An argparse ``type=``: ``convert(text)``, refused unless ``ok`` (``rule`` says why)."""

    def parse(text: str) -> NumberT:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what}: {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {value:g}")
        return value

    return parse


_positive_int = _number(int, "integer", lambda v: v >= 1, "at least 1")
_non_negative_int = _number(int, "integer", lambda v: v >= 0, "at least 0")
_temperature = _number(float, "number", lambda v: 0 <= v <= 2, "between 0 and 2")
# nan and inf parse as floats but are no time limit a person meant to give.
_seconds = _number(float, "number of seconds", lambda v: 0 < v < float("inf"), "a positive number")


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def _add_model_options(
    parser: argparse.ArgumentParser, *, positional: bool, many: bool = False
) -> None:
    if positional and many:
        parser.add_argument(
            "specs",
            nargs="*",
            metavar="SPEC",
            help="the model(s) as 'backend:model'; several are served side by side, each "
            "request routed by its 'model' (default: LLMKIT_MODEL, the config file, then "
            "hf:smollm2)",
        )
    elif positional:
        parser.add_argument(
            "spec",
            nargs="?",
            metavar="SPEC",
            help="the model as 'backend:model' (default: LLMKIT_MODEL, the config file, "
            "then hf:smollm2)",
        )
    else:
        parser.add_argument(
            "-m",
            "--model",
            dest="spec",
            metavar="SPEC",
            help="the model as 'backend:model', e.g. openai:gpt-4o-mini, hf:smollm2 "
            "(default: LLMKIT_MODEL, the config file, then hf:smollm2)",
        )
    parser.add_argument("--config", metavar="FILE", help="an llmkit.toml with profiles")
    parser.add_argument("--profile", metavar="NAME", help="the profile of the config to use")


def build_parser() -> argparse.ArgumentParser:
    """The ``llmkit`` argument parser."""
    parser = _Parser(
        prog="llmkit",
        description="One client for OpenAI, self-hosted REST servers and local models.",
    )
    parser.add_argument("--version", action="version", version=f"llmkit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logging on errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = commands.add_parser(
        "chat",
        help="chat with a model (one-shot or interactive)",
        description="Send PROMPT (or standard input) and stream the answer; without either, "
        "start an interactive session that keeps the conversation.",
    )
    chat.add_argument("prompt", nargs="?", metavar="PROMPT", help="the message ('-': stdin)")
    _add_model_options(chat, positional=False)
    chat.add_argument("-s", "--system", metavar="TEXT", help="a system prompt")
    chat.add_argument("-t", "--temperature", type=_temperature, metavar="T", help="0 to 2")
    chat.add_argument("--max-tokens", type=_positive_int, metavar="N", help="answer length cap")
    chat.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="per-call time limit")
    chat.add_argument(
        "--json",
        action="store_true",
        help="print the whole response as JSON (OpenAI chat.completion plus 'backend')",
    )
    chat.add_argument("--no-stream", action="store_true", help="print the answer when complete")
    chat.add_argument(
        "-r",
        "--reasoning-effort",
        choices=("none", "minimal", "low", "medium", "high"),
        help="how much a reasoning model thinks before answering",
    )
    chat.add_argument(
        "--hide-reasoning",
        action="store_true",
        help="do not print the model's reasoning (shown dim before the answer by default)",
    )
    chat.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="interactive session even when standard input is not a terminal",
    )
    chat.set_defaults(handler=_cmd_chat)

    serve = commands.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API",
        description="Serve any llmkit backend (a local hf: model, or openai:/rest: behind "
        "llmkit's retries and fallbacks) as /v1/chat/completions, /v1/completions, "
        "/v1/responses, /v1/embeddings, /v1/models and /health (described at "
        "/openapi.json), with a chat page at / (--no-ui turns it off). Needs the 'server' "
        "extra.",
    )
    _add_model_options(serve, positional=True, many=True)
    serve.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    serve.add_argument("--port", type=_port, default=8000, help="port (default: %(default)s)")
    serve.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' (default: ${ENV_SERVER_API_KEY})",
    )
    serve.add_argument(
        "--served-model", metavar="NAME", help="the model name clients use (default: SPEC's model)"
    )
    serve.add_argument(
        "--max-in-flight", type=_positive_int, metavar="N", help="generations at once"
    )
    serve.add_argument("--max-queue", type=_non_negative_int, metavar="N", help="requests waiting")
    serve.add_argument("--max-tokens-cap", type=_positive_int, metavar="N", help="max_tokens cap")
    serve.add_argument("--max-body-bytes", type=_positive_int, metavar="N", help="request size cap")
    serve.add_argument(
        "--graceful-timeout",
        type=_positive_int,
        metavar="SECONDS",
        help="on shutdown, how long in-flight requests may finish before they are cancelled",
    )
    store = serve.add_argument_group(
        "the Responses API store",
        "where /v1/responses keeps 'store: true' responses, in memory: least recently used "
        "ones go first when a limit is reached; a response is gone after the TTL",
    )
    store.add_argument(
        "--responses-max-entries",
        type=_positive_int,
        metavar="N",
        help="responses kept at most (default: 1000)",
    )
    store.add_argument(
        "--responses-max-bytes",
        type=_positive_int,
        metavar="N",
        help="their JSON size at most, in bytes (default: 67108864, 64 MiB)",
    )
    store.add_argument(
        "--responses-ttl",
        type=_seconds,
        metavar="SECONDS",
        help="how long a response is kept (default: 3600)",
    )
    serve.add_argument("--no-ui", action="store_true", help="do not serve the chat page at /")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="default: %(default)s",
    )
    serve.set_defaults(handler=_cmd_serve)

    backends = commands.add_parser(
        "backends", help="list the registered backends and whether their extras are installed"
    )
    backends.add_argument("--json", action="store_true", help="print JSON")
    backends.set_defaults(handler=_cmd_backends)

    providers = commands.add_parser(
        "providers",
        help="list the services reachable by name (groq:MODEL, ollama:MODEL, ...)",
    )
    output = providers.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--markdown", action="store_true", help="print a Markdown table")
    providers.set_defaults(handler=_cmd_providers)
    return parser


# ---------------------------------------------------------------------------- helpers


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """The options the command line set (the others keep the callee's defaults)."""
    return {k: v for k, v in values.items() if v is not None}


def _make_client(cls: type[Any], args: argparse.Namespace, **overrides: Any) -> Any:
    """A Client or AsyncClient from SPEC, or from --config/--profile, or the defaults."""
    overrides = _given(overrides)
    if args.config or args.profile:
        if args.spec:
            raise UsageError("give a model spec or --config/--profile, not both")
        source = args.config or os.environ.get(ENV_CONFIG)
        if source is None:
            if not Path(LOCAL_CONFIG).is_file():
                raise UsageError(
                    f"--profile needs a config file: pass --config FILE, set {ENV_CONFIG}, "
                    f"or create ./{LOCAL_CONFIG}"
                )
            source = LOCAL_CONFIG
        return cls.from_config(source, args.profile, **overrides)
    if args.spec:
        return cls(args.spec, **overrides)
    return cls(**overrides)


@contextlib.contextmanager
def _progress(message: str, stream: TextIO | None = None) -> Iterator[None]:
    """A spinner on stderr while the block runs (a single line when stderr is not a tty)."""
    out = stream or sys.stderr
    if not out.isatty():
        out.write(f"{message}...\n")
        out.flush()
        yield
        return
    stop = threading.Event()
    started = time.monotonic()

    def spin() -> None:
        frames = "|/-\\"
        index = 0
        while not stop.wait(0.1):
            elapsed = time.monotonic() - started
            out.write(f"\r{frames[index % len(frames)]} {message}... {elapsed:.0f}s")
            out.flush()
            index += 1

    spinner = threading.Thread(target=spin, name="llmkit-progress", daemon=True)
    spinner.start()
    try:
        yield
    finally:
        stop.set()
        spinner.join()
        out.write("\r\x1b[K")
        out.flush()


def _load_backend(client: Client | AsyncClient) -> None:
    """Load a local model now (behind a progress indicator) if the backend can."""
    backend = client.backend
    if isinstance(backend, SupportsLoad):
        with _progress(f"loading {backend.spec}"):
            backend.load()


def _read_stdin() -> str:
    text = sys.stdin.read().rstrip("\r\n")
    if not text.strip():
        raise UsageError("standard input is empty; pass a PROMPT")
    return text


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# ---------------------------------------------------------------------------- chat


def _chat_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    names = ("temperature", "max_tokens", "timeout", "reasoning_effort")
    return _given({name: getattr(args, name) for name in names})


def _dim() -> tuple[str, str]:
    """The escape codes that set reasoning apart: dim on a terminal (unless ``NO_COLOR``);
    elsewhere none, and a blank line alone separates it from the answer."""
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return "\x1b[2m", "\x1b[0m"
    return "", ""


class _ReasoningPrinter:
    """Prints stream events: reasoning dim (unless hidden), then the answer."""

    def __init__(self, hide: bool) -> None:
        self._hide = hide
        self._on, self._off = _dim()
        self._open = False

    def event(self, event: Any) -> None:
        reasoning = getattr(event, "reasoning", None) if event.type == "reasoning" else None
        if reasoning:
            if not self._hide:
                if not self._open:
                    _write(self._on)
                    self._open = True
                _write(reasoning)
        elif event.text:
            self.close()
            _write(event.text)

    def close(self) -> None:
        if self._open:
            _write(self._off + "\n\n")
            self._open = False


def _answer(
    client: Client, messages: list[Message], args: argparse.Namespace, kwargs: dict[str, Any]
) -> ChatResponse:
    """Send ``messages``; print the answer (streamed unless --json/--no-stream)."""
    if args.json:
        response = client.chat(messages, **kwargs)
        _write(json.dumps({**response.to_openai(), "backend": response.backend}, indent=2) + "\n")
        return response
    printer = _ReasoningPrinter(args.hide_reasoning)
    if args.no_stream:
        response = client.chat(messages, **kwargs)
        if response.reasoning:
            printer.event(ReasoningDelta(reasoning=response.reasoning))
        printer.close()
        _write(response.text + "\n")
        return response
    with client.stream(messages, **kwargs) as stream:
        for event in stream:
            printer.event(event)
    printer.close()
    _write("\n")
    return stream.response


def _conversation_start(args: argparse.Namespace) -> list[Message]:
    return [Message.system(args.system)] if args.system else []


def _cmd_chat(args: argparse.Namespace) -> int:
    interactive = args.interactive or (args.prompt is None and sys.stdin.isatty())
    if interactive and args.prompt is not None:
        raise UsageError("--interactive takes no PROMPT")
    if not interactive:
        prompt = _read_stdin() if args.prompt in (None, "-") else args.prompt
        if not prompt.strip():
            raise UsageError("the prompt is empty")
    kwargs = _chat_kwargs(args)
    with _make_client(Client, args) as client:
        _load_backend(client)
        if not interactive:
            _answer(client, [*_conversation_start(args), Message.user(prompt)], args, kwargs)
            return EXIT_OK
        return _interactive(client, args, kwargs)


def _interactive(client: Client, args: argparse.Namespace, kwargs: dict[str, Any]) -> int:
    """A session that keeps the conversation; /reset forgets it, /exit or Ctrl-D ends it."""
    tty = sys.stdin.isatty()
    if tty:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
        sys.stderr.write(
            f"llmkit chat with {client.backend.spec} - /reset clears the history, "
            "/exit or Ctrl-D quits\n"
        )
    history = _conversation_start(args)
    while True:
        try:
            line = input("> " if tty else "")
        except EOFError:
            if tty:
                sys.stderr.write("\n")
            return EXIT_OK
        text = line.strip()
        if not text:
            continue
        if text in _QUIT_COMMANDS:
            return EXIT_OK
        if text == "/reset":
            history = _conversation_start(args)
            continue
        history.append(Message.user(line))
        try:
            response = _answer(client, history, args, kwargs)
        except KeyboardInterrupt:
            _write("\n")
            history.pop()  # the interrupted turn is not part of the conversation
            continue
        except LLMError as exc:
            sys.stderr.write(f"error: {exc}\n")
            history.pop()
            if not tty:
                return _exit_code(exc)
            continue
        history.append(response.message)


# ---------------------------------------------------------------------------- serve


def _serve_clients(args: argparse.Namespace) -> dict[str, AsyncClient]:
    """The clients ``llmkit serve`` answers with, by served name."""
    from .server.app import _default_served_name

    specs: list[str] = args.specs
    if len(specs) <= 1:
        args.spec = specs[0] if specs else None
        client = _make_client(AsyncClient, args)
        return {args.served_model or _default_served_name(client.model): client}
    if args.config or args.profile:
        raise UsageError("serve several models by spec, or one profile with --config/--profile")
    if args.served_model:
        raise UsageError("--served-model names a single model; several are served by their names")
    clients: dict[str, AsyncClient] = {}
    for spec in specs:
        client = AsyncClient(spec)
        name = _default_served_name(client.model)
        if name in clients:
            raise UsageError(f"two models would be served as {name!r}; serve each name once")
        clients[name] = client
    return clients


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .server import ResponseStore, create_app, is_loopback, serve_app
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            f"llmkit serve needs {exc.name!r}, which is not installed; run: "
            'pip install "llmkit[server]"'
        ) from exc
    api_key = args.api_key or os.environ.get(ENV_SERVER_API_KEY) or None
    logging.basicConfig(
        level=logging.DEBUG if args.debug else getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not is_loopback(args.host) and not api_key:
        sys.stderr.write(
            f"warning: serving on {args.host} without an API key: anyone who can reach this "
            f"port can use the model (pass --api-key or set {ENV_SERVER_API_KEY})\n"
        )
    clients = _serve_clients(args)
    for client in clients.values():
        _load_backend(client)
    limits = {
        "max_in_flight": args.max_in_flight,
        "max_queue": args.max_queue,
        "max_tokens_cap": args.max_tokens_cap,
        "max_body_bytes": args.max_body_bytes,
    }
    store = {
        "max_entries": args.responses_max_entries,
        "max_bytes": args.responses_max_bytes,
        "ttl": args.responses_ttl,
    }
    app = create_app(
        clients,
        api_key=api_key,
        close_client=True,
        ui=not args.no_ui,
        responses_store=ResponseStore(**_given(store)),
        **_given(limits),
    )
    served = ", ".join(f"{c.backend.spec!r} as {name!r}" for name, c in clients.items())
    sys.stderr.write(
        f"llmkit: serving {served} on http://{args.host}:{args.port}/v1"
        f"{' (API key required)' if api_key else ''}\n"
    )
    if not args.no_ui:
        sys.stderr.write(f"llmkit: chat page at http://{args.host}:{args.port}/\n")
    options: dict[str, Any] = {"host": args.host, "port": args.port, "log_level": args.log_level}
    if args.graceful_timeout is not None:
        options["graceful_timeout"] = args.graceful_timeout
    try:
        serve_app(app, **options)
    except KeyboardInterrupt:
        # uvicorn shut down gracefully, then re-raised the Ctrl-C it caught.
        pass
    except SystemExit as exc:
        if exc.code in (None, 0):
            return EXIT_OK
        # uvicorn exits when it cannot bind or start; it has logged why just above.
        sys.stderr.write(f"error: the server could not start on {args.host}:{args.port}\n")
        return EXIT_FAILURE
    return EXIT_OK


# ---------------------------------------------------------------------------- backends


def _cmd_backends(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for name, info in sorted(available_backends().items()):
        try:
            installed = is_installed(name)
        except LLMError:
            installed = False
        hint = f'pip install "llmkit[{info.extra}]"' if info.extra else ", ".join(info.requires)
        rows.append({"name": name, "installed": installed, "extra": info.extra, "requires": hint})
    if args.json:
        _write(json.dumps(rows, indent=2) + "\n")
        return EXIT_OK
    width = max([len("BACKEND"), *(len(r["name"]) for r in rows)])
    lines = [f"{'BACKEND':<{width}}  INSTALLED  NEEDS"]
    for row in rows:
        mark = "yes" if row["installed"] else "no"
        lines.append(f"{row['name']:<{width}}  {mark:<9}  {row['requires'] or '-'}")
    _write("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_providers(args: argparse.Namespace) -> int:
    from ._providers import markdown_table, providers

    if args.markdown:
        _write(markdown_table())
        return EXIT_OK
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "backend": p.backend,
            "dialect": p.dialect,
            "base_url": p.base_url,
            "api_key_env": list(p.api_key_env),
            "key_set": p.api_key() is not None,
            "local": p.local,
        }
        for p in providers()
    ]
    if args.json:
        _write(json.dumps(rows, indent=2) + "\n")
        return EXIT_OK
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'PROVIDER':<{width}}  {'BACKEND':<7}  KEY  BASE URL"]
    for r in rows:
        key = "-" if not r["api_key_env"] else ("set" if r["key_set"] else "no")
        lines.append(f"{r['name']:<{width}}  {r['backend']:<7}  {key:<3}  {r['base_url']}")
    _write("\n".join(lines) + "\n")
    return EXIT_OK


# ---------------------------------------------------------------------------- main


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, ConfigError) and not isinstance(exc, BackendUnavailable):
        return EXIT_USAGE  # a bad spec, option or config: the input was wrong
    return EXIT_FAILURE


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``llmkit`` command; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except UsageError as exc:
        sys.stderr.write(f"{_one_line(str(exc))}\n")
        return EXIT_USAGE
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    elif args.command != "serve":
        # Library warnings (retries, replica cool-downs) would break the one-line contract;
        # without a handler Python prints them via its last-resort handler.
        logging.getLogger().addHandler(logging.NullHandler())
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); silence the flush at interpreter exit too.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, UsageError):
            message = f"llmkit {args.command}: {exc}"
        elif isinstance(exc, LLMError):
            message = f"error: {exc}"
        else:
            message = (
                f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)"
            )
        sys.stderr.write(_one_line(message) + "\n")
        return _exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
