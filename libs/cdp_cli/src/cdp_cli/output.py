"""Writing a command's output to stdout or to a file that appears only once complete."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from rich.console import Console
from rich.markup import escape

from .client import CliError

T = TypeVar("T")


def quiet_broken_pipe() -> None:
    """The reader of stdout left (`| head`): exit 0 without Python's complaint at shutdown."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    raise SystemExit(0)


def write_out(out_path: str | None, write: Callable[[IO[str]], T]) -> T:
    """`write(f)` on stdout (None or "-"), or on a hidden `.FILE.<pid>.part` beside FILE that is
    renamed to FILE only once complete (an interrupted write leaves no partial FILE)."""
    if out_path is None or out_path == "-":
        try:
            return write(sys.stdout)
        except BrokenPipeError:
            quiet_broken_pipe()
    target = Path(out_path)
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(part, "w", encoding="utf-8") as f:
            result = write(f)
        os.replace(part, target)
    except OSError as e:
        raise CliError(f"cannot write {out_path}: {e}") from None
    finally:
        part.unlink(missing_ok=True)
    return result


def write_lines(out_path: str | None, write: Callable[[IO[str]], int], what: str) -> None:
    """`write_out`, then "exported N <what> [to FILE]" on stderr (N: what `write` returned)."""
    n = write_out(out_path, write)
    Console(stderr=True, soft_wrap=True).print(
        f"exported {n} {what}" + ("" if out_path in (None, "-") else f" to {escape(out_path)}"))


async def write_stream(f: IO[str], call, to_dict: Callable) -> int:
    """Writes each message of a server-streaming call as one JSON line as it arrives (nothing
    is held beyond one message); returns how many. The call is cancelled however this ends."""
    n = 0
    try:
        async for message in call:
            f.write(json.dumps(to_dict(message), ensure_ascii=False, separators=(",", ":")))
            f.write("\n")
            n += 1
    finally:
        call.cancel()
    f.flush()
    return n
