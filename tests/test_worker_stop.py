"""A worker stops cleanly when its whole process group gets SIGTERM, as systemd and a terminal send it.

systemd's default `KillMode=control-group` sends SIGTERM to every process of the unit at once, and a
terminal's job control signals the whole process group: each process of the cluster gets the signal,
not only the `qcluster` master. The stop must still be the cluster's own orderly one: the task being
run is finished and recorded, and every process is gone well within systemd's stop timeout.
"""

import os
import signal
import time
from pathlib import Path

import pytest
from django_q.models import Task
from django_q.tasks import async_task

from .conftest import BROKERS
from .peers import wait_until

STOP_BOUND_SECONDS = 10


def slow_task(marker, seconds):
    """Run by the worker under test: says it started, then works for a while."""
    Path(marker).write_text("started")
    time.sleep(seconds)
    return "finished"


def stubborn_task(marker):
    """Run by the worker under test: swallows its timeout (SIGALRM) and goes on, as a hung C call would."""
    Path(marker).write_text("started")
    while True:
        try:
            time.sleep(60)
        except BaseException:
            pass


def live_processes_of_group(pgid):
    """Pids of the group's processes that have not exited (a zombie has exited: it is not counted)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            pids.append(int(entry.name))
    return pids


def stop_group_and_wait(worker, signum):
    """Signal the worker's whole process group; the pids still alive after the bound (none if it stopped)."""
    pgid = worker.process.pid  # started in a session of its own: its pid is the group id
    assert len(live_processes_of_group(pgid)) >= 4  # master, sentinel, pusher, monitor, workers
    os.killpg(pgid, signum)
    deadline = time.monotonic() + STOP_BOUND_SECONDS
    while time.monotonic() < deadline:
        worker.process.poll()  # reap the master, our child, as soon as it exits
        if not live_processes_of_group(pgid):
            worker.process.wait(5)  # gone between the poll above and the look at the group: reap it now
            return []
        time.sleep(0.1)
    return live_processes_of_group(pgid)


def start_running_task(workers, tmp_path, seconds):
    cluster = workers()
    marker = tmp_path / "started"
    task_id = async_task("tests.test_worker_stop.slow_task", str(marker), seconds)
    wait_until(marker.exists, timeout=60, message="the worker to start the task")
    return cluster, task_id


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", BROKERS, indirect=True)
def test_it_stops_every_process_when_the_whole_group_gets_sigterm(broker, workers, tmp_path):
    cluster, task_id = start_running_task(workers, tmp_path, seconds=2)

    left = stop_group_and_wait(cluster, signal.SIGTERM)

    assert left == [], f"still running {STOP_BOUND_SECONDS} s after SIGTERM to the group:\n{cluster.output()}"
    assert cluster.process.returncode == 0
    task = Task.objects.get(id=task_id)  # the task in hand was finished and recorded, not lost
    assert task.success and task.result == "finished"


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_stops_every_process_when_only_the_master_gets_sigterm(workers, tmp_path):
    cluster, task_id = start_running_task(workers, tmp_path, seconds=2)

    os.kill(cluster.process.pid, signal.SIGTERM)  # what KillMode=mixed sends first
    cluster.process.wait(STOP_BOUND_SECONDS)
    wait_until(lambda: not live_processes_of_group(cluster.process.pid), timeout=STOP_BOUND_SECONDS,
               message="every process of the cluster to exit")

    assert Task.objects.get(id=task_id).result == "finished"


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_stops_every_process_when_the_whole_group_gets_sigint(workers, tmp_path):
    cluster, task_id = start_running_task(workers, tmp_path, seconds=2)

    left = stop_group_and_wait(cluster, signal.SIGINT)  # Ctrl-C in a terminal

    assert left == [], cluster.output()
    assert Task.objects.get(id=task_id).result == "finished"


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_still_kills_a_worker_whose_task_outlives_its_timeout(workers, tmp_path):
    cluster = workers(Q_WORKERS=1)
    marker = tmp_path / "stubborn"
    async_task("tests.test_worker_stop.stubborn_task", str(marker), timeout=1)
    wait_until(marker.exists, timeout=60, message="the stubborn task to start")
    next_task = async_task("tests.test_worker_stop.slow_task", str(tmp_path / "next"), 0)

    # The sentinel's SIGTERM, sent once the task is past its timeout, ends the only worker; its successor runs on.
    wait_until(lambda: Task.objects.filter(id=next_task).exists(), timeout=60, message="the next task to run")
    assert Task.objects.get(id=next_task).result == "finished"
    assert stop_group_and_wait(cluster, signal.SIGTERM) == []
