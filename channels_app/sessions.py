"""Several provider sessions sending one batch together: an SMTP connection, an HTTP keep-alive pool each.

A channel's send step hands its messages to `send_in_sessions` with a function that sends through
one session: it opens the session, takes messages one at a time from the shared `Source` until it
is empty, yields one Outcome per message it took, and closes the session. With one session it runs
in the caller's thread; with more, each runs in a thread of its own (the time each spends waiting
for its provider's answer is the others' time to send), and their outcomes are yielded as they
come. A message is taken by one session only; a message no session took gets the reason a session
gave (it could not connect) or "connection lost".

A session takes a message only while fewer than `sessions` outcomes wait for the caller, who records
them as they come: a worker that dies leaves at most one sent and unrecorded message per session
beyond the engine's recording window. When the caller stops taking outcomes (a cancel, the task's
time budget), the sessions take no more messages; the outcomes of the messages already in flight
are left on the notifier as `late_outcomes`, which the fixed sequence reports (Notifier._send), so
nothing sent goes unrecorded.
"""

import queue
import threading
from urllib.parse import urlsplit

import requests

from .errors import outcome_for_error
from .outcomes import Outcome

__all__ = ["ProviderSession", "Source", "send_in_sessions"]


class ProviderSession(requests.Session):
    """A keep-alive HTTP session to a provider that reads the environment (proxies, no_proxy, CA bundle) once
    per host, where requests.Session reads it again for every request: the same settings, without scanning
    os.environ for each of a batch's thousands of requests. A request that passes its own proxies, stream,
    verify or cert is merged as requests merges it."""

    def __init__(self):
        super().__init__()
        self._environment = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        host = urlsplit(url)[:2]
        if host not in self._environment:
            self._environment[host] = super().merge_environment_settings(url, {}, None, None, None)
        merged = dict(self._environment[host])
        merged["proxies"] = dict(merged["proxies"])
        return merged


class Source:
    """The batch's messages, taken one at a time by the sessions; `stop()` makes it look empty."""

    def __init__(self, messages, slots=None):
        self._messages = iter(messages)
        self._lock = threading.Lock()
        self._stopped = False
        self.slots = slots  # messages taken and not yet handed to the caller, at most (a Semaphore)
        self.cannot_connect = None  # the error of a session that could not open

    def take(self):
        if self.slots is not None:
            self.slots.acquire()
        with self._lock:
            message = None if self._stopped else next(self._messages, None)
        if message is None and self.slots is not None:
            self.slots.release()
        return message

    def __iter__(self):
        while (message := self.take()) is not None:
            yield message

    def stop(self):
        with self._lock:
            self._stopped = True

    def rest(self):
        """What no session took, taken now."""
        with self._lock:
            return list(self._messages)


def sessions_for(count, configured, per_session=10):
    """How many sessions a batch of `count` messages gets: at most `configured`, each with some work (a new
    connection costs a handshake, worth it for ten messages or more)."""
    return max(1, min(configured, count // per_session))


def send_in_sessions(notifier, session_step, messages, sessions):
    """Yield one Outcome per message of `messages`, sent by `sessions` runs of `session_step(source)`."""
    source = Source(messages)
    if sessions <= 1:
        yield from session_step(source)
    else:
        yield from _threaded(notifier, session_step, source, sessions)
    for message in source.rest():
        if source.cannot_connect is not None:
            outcome = outcome_for_error(message, source.cannot_connect)
            outcome.error = f"cannot connect: {source.cannot_connect}"
            yield outcome
        else:
            yield Outcome.transient_failure(message, "connection lost", provider_failure=True)


_DONE = object()


def _threaded(notifier, session_step, source, sessions):
    # A session takes its next message once the caller took the outcome of one before it: the caller records
    # as it goes, so what was sent and not yet recorded stays at one message per session.
    source.slots = threading.Semaphore(sessions)
    results = queue.SimpleQueue()

    def run():
        try:
            for outcome in session_step(source):
                results.put(outcome)
        except BaseException as exc:  # the session broke as a whole: the consumer raises it
            results.put(exc)
        finally:
            results.put(_DONE)

    threads = [threading.Thread(target=run, daemon=True, name=f"{notifier.key}-session-{n}") for n in range(sessions)]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = results.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                source.stop()
                raise item
            else:
                yield item
                source.slots.release()
    finally:  # stopped early (or broken): no new messages; those in flight finish and are reported late
        source.stop()
        for _ in threads:
            source.slots.release()  # a session waiting for a slot sees the stop
        for thread in threads:
            thread.join()
        late = []
        while not results.empty():
            item = results.get()
            if isinstance(item, Outcome):
                late.append(item)
        if late:
            notifier.__dict__.setdefault("late_outcomes", []).extend(late)
