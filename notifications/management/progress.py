"""Progress for long commands: a bar on a terminal, plain lines (every 10%) otherwise."""

import time


class Progress:
    def __init__(self, stream, label, *, width=30, tty=None):
        self.stream = stream
        self.label = label
        self.width = width
        self.tty = stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self.last_tenth = -1

    def __call__(self, done, total):
        fraction = done / total if total else 1.0
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.tty:
            filled = int(fraction * self.width)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                              f"{done}/{total} {fraction:4.0%} {rate:,.0f}/s", ending="")
            if done >= total:
                self.stream.write("")
            self.stream.flush()
        else:
            tenth = int(fraction * 10)
            if tenth != self.last_tenth or done >= total:
                self.last_tenth = tenth
                self.stream.write(f"{self.label}: {done}/{total} ({fraction:.0%})")
