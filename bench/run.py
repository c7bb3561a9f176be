"""Every figure of the speed targets (issue 13), measured in one go and printed as one table.

    .venv/bin/python bench/run.py [--quick] [--backend auto|postgres|embedded] [--only email,inbox,...]
    make bench                       # the same; make bench BENCH_ARGS="--quick"

Each figure is one run of a benchmark script of bench/, in a subprocess with a database of its own
(fanout.py, alert.py, api.py, ratelimit.py; see their docstrings); every script measures its raw
limit in the same run, and every run that sends counts lost and duplicated messages. The table
(Markdown) has one row per figure: the figure, its target, what was measured, the raw limit of the
same run, and lost / duplicates (or errors, for the API).

--backend: `postgres` runs on PostgreSQL + Redis (DATABASE_URL and REDIS_URL when they name them,
else postgres://postgres@127.0.0.1:5432/postgres and redis://127.0.0.1:6379/0); `embedded` on the
embedded default (SQLite, ORM broker, database cache); `auto` (default) picks PostgreSQL + Redis
when both answer. On PostgreSQL + Redis the 50,000-recipient alert also runs on the embedded default
(reported without a target; --no-embedded-alert skips it). --quick runs smaller sizes (a try-out:
its figures are not the targets' sizes). Each script's whole output is kept under var/bench/.
Run it by hand on a quiet machine; never in tests.
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BASE_DIR = BENCH_DIR.parent
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
FIGURES = ("email", "inbox", "alert", "api", "optout", "ratelimit")

FULL = {"email": 10_000, "inbox": (10_000, 100_000), "alert": 50_000, "optout": 10_000, "api_seconds": 5,
        "rate_seconds": 30}
QUICK = {"email": 2_000, "inbox": (2_000, 20_000), "alert": 5_000, "optout": 2_000, "api_seconds": 2,
         "rate_seconds": 10}


def answers(database_url, redis_url):
    """Whether the PostgreSQL server and the Redis server answer."""
    try:
        import psycopg
        import redis

        with psycopg.connect(database_url, connect_timeout=2):
            pass
        return bool(redis.from_url(redis_url, socket_connect_timeout=2).ping())
    except Exception:
        return False


def environments(backend):
    """{"main": env, "embedded": env}: the subprocess environments of the chosen backend."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "Q_BROKER")}
    embedded = dict(base)
    database_url = os.environ.get("DATABASE_URL", "")
    database_url = database_url if database_url.startswith(("postgres://", "postgresql://")) else POSTGRES_URL
    redis_url = os.environ.get("REDIS_URL") or REDIS_URL
    if backend == "auto":
        backend = "postgres" if answers(database_url, redis_url) else "embedded"
    if backend == "embedded":
        return "embedded", {"main": embedded}
    if not answers(database_url, redis_url):
        raise SystemExit(f"PostgreSQL ({database_url}) or Redis ({redis_url}) does not answer")
    return "postgres", {"main": {**base, "DATABASE_URL": database_url, "REDIS_URL": redis_url}, "embedded": embedded}


class Runner:
    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.count = 0

    def run(self, name, script, args, env):
        """Run one benchmark script; return its output (stdout and stderr), kept in the log directory."""
        self.count += 1
        command = [sys.executable, str(BENCH_DIR / script), *map(str, args)]
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        started = time.monotonic()
        done = subprocess.run(command, cwd=BASE_DIR, env=env, capture_output=True, text=True)
        output = done.stdout + done.stderr
        (self.log_dir / f"{self.count:02d}-{name}.log").write_text(output)
        print(f"    {time.monotonic() - started:.0f} s, exit {done.returncode}", file=sys.stderr, flush=True)
        if done.returncode:
            raise BenchError(f"{script} exited {done.returncode}: {output.strip().splitlines()[-1:]}")
        return output

    def database(self, prefix):
        return f"{prefix}_{os.getpid()}_{self.count + 1}"


class BenchError(Exception):
    pass


def field(pattern, text, cast=float):
    found = re.search(pattern, text)
    if not found:
        raise BenchError(f"no {pattern!r} in the output")
    return cast(found.group(1))


def line(prefix, output):
    for candidate in output.splitlines():
        if candidate.startswith(prefix):
            return candidate
    raise BenchError(f"no line starting with {prefix!r}")


def fanout_result(output):
    text = line("fanout:", output)
    return {"deliveries": field(r"fanout: (\d+) deliveries", text, int), "seconds": field(r" in ([\d.]+) s", text),
            "rate": field(r"= ([\d.]+)/s", text), "limit": field(r"limit ([\d.]+)/s", text),
            "ratio": field(r"ratio ([\d.]+)", text), "lost": field(r"lost (-?\d+)", text, int),
            "duplicates": field(r"duplicates (-?\d+)", text, int), "rss": field(r"RSS ([\d.]+) MB", text)}


def checked(result):
    return f"{result['lost']} / {result['duplicates']}"


def figure_email(runner, env, sizes):
    n = sizes["email"]
    r = fanout_result(runner.run("email", "fanout.py", ["--recipients", n, "--channels", "email",
                                                        "--database", runner.database("fn_run")], env))
    return [(f"email fan-out ÷ raw SMTP rate, {n:,} recipients", "≥ 0.8",
             f"{r['ratio']:.2f} ({r['rate']:.0f}/s)", f"SMTP {r['limit']:.0f}/s", checked(r))]


def figure_inbox(runner, env, sizes):
    small, large = sizes["inbox"]
    results = {}
    for n in (small, large):
        results[n] = fanout_result(runner.run(f"inbox-{n}", "fanout.py", [
            "--recipients", n, "--channels", "inbox", "--database", runner.database("fn_run")], env))
    rows = [(f"inbox-only fan-out, {n:,} recipients", "< 1.0 s" if n == 10_000 else "< 10 s" if n == 100_000 else "—",
             f"{r['seconds']:.2f} s", f"bulk insert {r['limit']:.0f}/s", checked(r)) for n, r in results.items()]
    cost = (results[large]["seconds"] / large) / (results[small]["seconds"] / small)
    rows.append((f"worker peak RSS, {large:,} recipients (inbox)", "< 250 MB" if large == 100_000 else "—",
                 f"{results[large]['rss']:.0f} MB", "", checked(results[large])))
    rows.append((f"cost per delivery, {large:,} ÷ {small:,} (inbox)", "≤ 1.1",
                 f"{cost:.2f} ({results[large]['seconds'] / large * 1000:.3f} vs "
                 f"{results[small]['seconds'] / small * 1000:.3f} ms)", "", "see above"))
    return rows


def alert_row(output, n, label, target):
    text = line("alert:", output)
    total = field(r"handed to providers in ([\d.]+) s", text)
    channels = re.findall(r"(email|sms|push|inbox) ([\d.]+) s ([\d.]+)/s of raw ([\d.]+)/s \(([\d.]+)\)", text)
    per_channel = ", ".join(f"{c} {float(ratio):.2f}" for c, _, _, _, ratio in channels)
    raw = ", ".join(f"{c} {float(limit):.0f}/s" for c, _, _, limit, _ in channels)
    result = {"lost": field(r"lost (-?\d+)", text, int), "duplicates": field(r"duplicates (-?\d+)", text, int)}
    return (f"security alert to {n:,} students, email + SMS + push + inbox{label}: until every delivery is handed "
            f"to its provider (each channel's rate ÷ raw)", target, f"{total:.1f} s ({per_channel})", raw,
            checked(result))


# Lines printed under the table: where the CPU went during each alert run.
NOTES = []


def figure_alert(runner, env, sizes, embedded_env=None):
    n = sizes["alert"]
    output = runner.run("alert", "alert.py", ["--recipients", n, "--database", runner.database("fn_run")], env)
    rows = [alert_row(output, n, "", "< 60 s")]
    NOTES.append(f"alert: {line('peers together', output)}")
    NOTES.append(f"alert: {line('CPU during', output)}")
    if embedded_env is not None:
        try:
            output = runner.run("alert-embedded", "alert.py", ["--recipients", n], embedded_env)
            rows.append(alert_row(output, n, " (embedded: SQLite, ORM broker)", "—"))
            NOTES.append(f"alert, embedded: {line('peers together', output)}")
            NOTES.append(f"alert, embedded: {line('CPU during', output)}")
        except BenchError as exc:
            rows.append((f"security alert to {n:,} students (embedded)", "—", f"error: {exc}", "", ""))
    return rows


def figure_api(runner, env, sizes):
    api_env = dict(env)
    if env.get("DATABASE_URL", "").startswith("postgres"):
        api_env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + runner.database("fn_run_api")
    output = runner.run("api", "api.py", ["--clients", 20, "--seconds", sizes["api_seconds"]], api_env)
    results = {}
    for text in output.splitlines():
        found = re.match(r"(GET|POST)\s+(\S+)\s+([\d.]+) req/s\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", text)
        if found:
            errors = re.search(r"\((\d+) errors", text)
            results[found.group(2)] = {"rate": float(found.group(3)), "p99": float(found.group(5)),
                                       "errors": int(errors.group(1)) if errors else 0}
    try:
        health, inbox, post = (results[path] for path in ("/api/v1/health/", "/api/v1/me/inbox/",
                                                           "/api/v1/notifications/"))
    except KeyError as exc:
        raise BenchError(f"no line for {exc} in api.py's output") from None
    return [("`GET me/inbox/` ÷ `GET health/` (gunicorn, 20 clients)", "≥ 0.5",
             f"{inbox['rate'] / health['rate']:.2f} ({inbox['rate']:.0f} req/s)", f"health {health['rate']:.0f} req/s",
             f"errors {inbox['errors']}"),
            ("`POST notifications/` p99, 20 clients, 500-member cohort", "< 100 ms", f"{post['p99']:.0f} ms",
             f"health p99 {health['p99']:.0f} ms", f"errors {post['errors']}")]


def figure_optout(runner, env, sizes):
    n = sizes["optout"]
    output = runner.run("optout", "fanout.py", ["--recipients", n, "--channels", "email,inbox", "--opt-out-half",
                                                "--database", runner.database("fn_run")], env)
    text = line("opt-out half: fan-out", output)
    halved, none, ratio = (field(r"fan-out ([\d.]+) s", text), field(r"vs ([\d.]+) s", text),
                           field(r"ratio ([\d.]+)", text))
    planning = field(r"planning in this process.*ratio ([\d.]+)", output)
    return [(f"opted-out half of {n:,} (email + inbox): fan-out time ÷ none opted out", "≤ 1.1",
             f"{ratio:.2f} ({halved:.2f} s vs {none:.2f} s)", f"planning alone {planning:.2f}",
             checked(fanout_result(output)))]


def figure_ratelimit(runner, env, sizes):
    seconds = sizes["rate_seconds"]
    output = runner.run("ratelimit", "ratelimit.py", ["--rate", 50, "--seconds", seconds, "--clusters", 2,
                                                      "--database", runner.database("fn_run")], env)
    text = line("ratelimit:", output)
    rate, ratio = field(r"observed ([\d.]+)/s", text), field(r"observed [\d.]+/s over [\d.]+ s \(ratio ([\d.]+)", text)
    result = {"lost": field(r"lost (-?\d+)", text, int), "duplicates": field(r"duplicates (-?\d+)", text, int)}
    busiest = field(r"busiest second (\d+)", text, int)
    return [(f"provider rate limit 50/s, two `qcluster`s, {seconds:g} s: observed ÷ configured", "0.95–1.05",
             f"{ratio:.3f} ({rate:.1f}/s; busiest second {busiest})",
             "configured 50/s", checked(result))]


def machine():
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0
    return (f"{os.cpu_count()} CPUs ({model or platform.processor()}), Python {platform.python_version()}, "
            f"load {load:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, to try the benchmarks out")
    parser.add_argument("--backend", choices=("auto", "postgres", "embedded"), default="auto")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated, of {', '.join(FIGURES)}")
    parser.add_argument("--no-embedded-alert", action="store_true",
                        help="on PostgreSQL + Redis, skip the alert's extra run on the embedded default")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if set(only) - set(FIGURES):
        parser.error(f"--only takes a comma-separated list of {', '.join(FIGURES)}")
    sizes = QUICK if args.quick else FULL
    backend, envs = environments(args.backend)
    log_dir = BASE_DIR / "var" / "bench" / time.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(log_dir)
    env = envs["main"]
    started = time.monotonic()
    rows = []
    for name in only:
        try:
            if name == "alert":
                embedded = None if args.no_embedded_alert else envs.get("embedded")
                rows += figure_alert(runner, env, sizes, embedded)
            else:
                rows += globals()[f"figure_{name}"](runner, env, sizes)
        except BenchError as exc:
            rows.append((name, "", f"error: {exc}", "", ""))
    described = "PostgreSQL + Redis (broker and cache)" if backend == "postgres" else \
        "embedded default (SQLite, ORM broker, database cache)"
    print(f"\n{described}, 2 workers per qcluster, chunk {os.environ.get('FANOUT_CHUNK_SIZE', 500)}; "
          f"{machine()}; {time.strftime('%Y-%m-%d %H:%M')}; {'--quick sizes; ' if args.quick else ''}"
          f"{time.monotonic() - started:.0f} s in all; logs in {log_dir.relative_to(BASE_DIR)}\n")
    print("| figure | target | measured | raw limit, same run | lost / duplicates |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    if NOTES:
        print()
        for note in NOTES:
            print(f"- {note}")


if __name__ == "__main__":
    main()
