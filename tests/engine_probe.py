"""Run one engine step in a separate process, as a worker would: `python -m tests.engine_probe`.

    send <delivery ids, comma-separated> <now, ISO 8601>   -> deliveries_send(ids, now=now)
    breaker <provider> <now, ISO 8601>                     -> the provider's breaker state at `now`

Prints one JSON object. Tests use it to show that state in the shared cache is seen by
every worker process.
"""

import json
import sys
from datetime import datetime

import django


def main(command, *args):
    django.setup()
    from channels_app.breaker import CircuitBreaker
    from notifications.engine import deliveries_send

    if command == "send":
        ids, now = [int(pk) for pk in args[0].split(",")], datetime.fromisoformat(args[1])
        return deliveries_send(ids, now=now)
    if command == "breaker":
        now = datetime.fromisoformat(args[1])
        return CircuitBreaker(args[0], clock=now.timestamp).snapshot()
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:]), default=str))
