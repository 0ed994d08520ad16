"""The one place that prints. Results go to stdout; progress, notes and warnings to stderr.

`Output(fmt="json")` prints results as JSON for machines; rich is imported only when a table or
a progress bar is actually drawn, so commands that print a line stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

from launcher.redact import redact, redact_obj  # secrets never reach a terminal or a log


class Output:
    def __init__(self, fmt: str = "human", quiet: bool = False, color: bool | None = None):
        self.fmt, self.quiet = fmt, quiet
        self.color = (sys.stderr.isatty() and not os.environ.get("NO_COLOR")) if color is None else color
        self._err_console = None
        self._out_console = None

    # consoles are built lazily: importing rich costs ~60 ms
    @property
    def err(self):
        if self._err_console is None:
            from rich.console import Console
            self._err_console = Console(stderr=True, no_color=not self.color, highlight=False,
                                        soft_wrap=True, width=None if self.color else 120)
        return self._err_console

    @property
    def out(self):
        if self._out_console is None:
            from rich.console import Console
            self._out_console = Console(no_color=not self.color, highlight=False, soft_wrap=True,
                                        width=None if sys.stdout.isatty() else 140)
        return self._out_console

    @property
    def json_mode(self) -> bool:
        return self.fmt == "json"

    def info(self, msg: str) -> None:
        if not self.quiet:
            print(redact(msg), file=sys.stderr, flush=True)

    def warn(self, msg: str) -> None:
        print(redact(f"warning: {msg}"), file=sys.stderr, flush=True)

    def result(self, text: str) -> None:
        print(redact(text), flush=True)

    def json(self, obj: Any) -> None:
        print(redact(json.dumps(redact_obj(obj), indent=2, default=str)), flush=True)

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None,
              to_stderr: bool = False) -> None:
        from rich.table import Table
        t = Table(title=title, show_lines=False, header_style="bold")
        for c in columns:
            t.add_column(str(c), overflow="fold")
        for r in rows:
            t.add_row(*[("" if v is None else redact(str(v))) for v in r])
        (self.err if to_stderr else self.out).print(t)
