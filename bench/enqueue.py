"""Enqueue rate: tasks handed to the broker per second, through the engine's queue and through
django-q2's `async_task` alone (a new broker, so on Redis a new connection, per task), in the same run.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/enqueue.py [--tasks 2000]

Uses the broker the settings choose (Redis with REDIS_URL, else the ORM broker on a scratch SQLite
database) under a queue name of its own, which it empties at the end. Prints one line:

    enqueue: <n>/s shared broker vs <n>/s one broker per task; ratio <x>
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def enqueue_rates(tasks):
    """(tasks/s through notifications.engine.queue, tasks/s through async_task with a broker per task)."""
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    from notifications.engine.queue import enqueue_deliveries

    started = time.perf_counter()
    for n in range(tasks):
        async_task("notifications.tasks.send_deliveries", [n])
    per_task = tasks / (time.perf_counter() - started)
    started = time.perf_counter()
    for n in range(tasks):
        enqueue_deliveries([n])
    shared = tasks / (time.perf_counter() - started)
    get_broker().purge_queue()
    return shared, per_task


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="fn-enqueue-", dir=BASE_DIR / "var")
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "flashnotify.settings", "DEBUG": "false", "SECRET_KEY": "bench-" + "x" * 50,
        "Q_CLUSTER_NAME": f"fn-enqueue-{os.getpid()}", "CACHE_KEY_PREFIX": f"fn-enqueue-{os.getpid()}",
        "DATABASE_URL": f"sqlite:///{scratch}/enqueue.sqlite3", "LOG_LEVEL": "WARNING",
    })
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        shared, per_task = enqueue_rates(args.tasks)
        print(f"enqueue: {shared:.0f}/s shared broker vs {per_task:.0f}/s one broker per task; "
              f"ratio {shared / per_task:.2f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    main()
