"""The `motif-video` command: parse, build a config, call one library function.

Each subcommand lives in `motif_video.commands.<name>` and registers its own parser.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import signal
import sys

from .notices import LOADER_NOTICES, DropNotice

COMMANDS = ["info", "generate", "extend", "train", "cache", "distill", "eval", "export", "serve"]
# Notices the libraries print on every run that a user of the command can do nothing about, by emitting logger:
# those of diffusers' pipeline loader (`notices.LOADER_NOTICES`, which the pipelines drop while they load: guiders
# called experimental, SigLIP's fallback to its PIL image processor without torchvision); diffusers warns about
# modules to keep in float32 on every `.to(dtype=...)` even when there are none (`[]`); and where torchao is
# installed (the fp8 extra) its import, which diffusers makes as it imports its models (its torchao quantizer, at
# module level), reports the CUDA kernels of its PyPI wheel that a CPU-only torch cannot load (they link
# libc10_cuda.so), the deprecated pytree registration of its enums, and diffusers (0.42) that it cannot import
# torchao's tensor types (torchao 0.18 moved or removed them), none of which a command that does not use FP8
# touches. The command drops them for the whole process; the library, only the loader's while its pipelines load.
KNOWN_NOTICES = {
    **LOADER_NOTICES,
    "diffusers.models.modeling_utils": "that should be kept in float32: [].",
    "torchao": "Could not load this library",
    "torch.utils._pytree": "is an Enum subclass and is now natively supported by torch.compile",
    "diffusers.quantizers.torchao.torchao_quantizer": "Unable to import `torchao` Tensor objects",
}


def quiet_known_notices() -> None:
    """Drop `KNOWN_NOTICES` (each once, however often it is called); every other message of those loggers stays."""
    for name, text in KNOWN_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNotice) and f.text == text for f in logger.filters):
            logger.addFilter(DropNotice(text))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="motif-video", description="Motif-Video 2B: generate, train, inspect."
    )
    parser.add_argument("--version", action="version", version=f"motif-video {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"motif_video.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command's entry point. A reader that stops reading its output (`motif-video info --json | head -3`) ends
    it quietly with 141 (128 + SIGPIPE, as a command that pipe stopped exits in a shell), not with a traceback; a
    broken pipe that is not stdout (the command's own, to a process that exited) is the command's error."""
    try:
        code = _main(argv)
    except BrokenPipeError:
        if not _stdout_broken():
            raise
        return _output_gone()
    try:
        sys.stdout.flush()  # what is still buffered, while a closed pipe can be caught here
    except BrokenPipeError:
        return _output_gone()
    return code


def _stdout_broken() -> bool:
    """Whether stdout is a pipe (or socket) whose reader is gone: what is still buffered fails to go, or, with
    nothing buffered, the file descriptor polls as an error or hang-up (where poll exists; elsewhere, yes)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):  # closed, or not a file: not a pipe that broke
        return False
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation included: an in-memory stdout
        return False
    if not hasattr(select, "poll"):
        return True
    poll = select.poll()
    poll.register(fd, 0)  # errors and hang-ups are reported whatever the events asked
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))


def _output_gone() -> int:
    """The exit status of a command whose reader stopped reading, its stdout pointed at /dev/null: the rest of the
    output goes nowhere, and the interpreter's own flush at exit would report the pipe again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command's own parser, whose usage is the one to show
        command = _subparsers(parser).choices.get(args.command, parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.given = given_flags(parser, args.command, sys.argv[1:] if argv is None else argv)
    quiet_known_notices()
    previous = _interrupt_on_sigterm()
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"motif-video {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"motif-video {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def given_flags(parser: argparse.ArgumentParser, command: str, argv: list[str]) -> set[str]:
    """The destinations `argv` set on the command line, whatever their values (`--replay` puts these over the stored
    settings: `--overlap 9` given is meant even where 9 is the default). The command's parser is run once more with
    every default suppressed, so that only what was given lands in the namespace."""
    sub = _subparsers(parser).choices[command]
    saved = [(action, action.default) for action in sub._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        given, _ = sub.parse_known_args(argv[argv.index(command) + 1 :])
    finally:
        for action, default in saved:
            action.default = default
    flags = {action.dest for action, _ in saved if action.option_strings}  # an absent positional still lands
    return set(vars(given)) & flags


def _interrupt_on_sigterm():
    """SIGTERM (`kill`, `timeout`, a scheduler's stop) ends a command as Ctrl-C does, so its cleanups run and no
    temporary file is left behind (by default the process dies where it stands). Returns the handler it replaced;
    None off the main thread, where no handler can be set. `serve` sets its own."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


if __name__ == "__main__":
    sys.exit(main())
