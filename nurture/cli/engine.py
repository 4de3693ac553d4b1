"""Running the service: schema, web, worker, beat, dispatch, and all of them at once."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time

import click

from nurture.cli.output import say, when
from nurture.config import base_url_elsewhere, listening_url
from nurture.context import current
from nurture.errors import NurtureError
from nurture.process_tree import child_of_this_process

# How long `nurture run` waits for its children to stop before it kills them (and all they
# started). Longer than gunicorn's --graceful-timeout, so web stops cleanly first.
STOP_SECONDS = 15


def register(cli: click.Group) -> None:
    cli.add_command(db)
    cli.add_command(run)
    cli.add_command(web)
    cli.add_command(worker)
    cli.add_command(beat)
    cli.add_command(dispatch)


@click.group()
def db() -> None:
    """The database schema.

    Example: nurture db upgrade
    """


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the latest version (safe to run again).

    Example: NURTURE_DATABASE_URL=postgresql+psycopg://nurture@db/nurture nurture db upgrade
    """
    from nurture.migrations import upgrade

    upgrade(current().settings.database_url, settings=current().settings)
    click.echo("database is up to date")


def _open_keys() -> None:
    """Open the database's data keys before starting anything: a key that opens nothing
    stops here with one line naming it, not in a page or a task later."""
    current().data_keys  # noqa: B018 (opening is the check)


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", *args]


def _worker_args(concurrency: int | None) -> list[str]:
    args = ["worker", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    if current().settings.is_embedded_broker:
        # The SQLite broker is one file: a few threads in one process share it politely.
        args += ["--pool", "threads", "--concurrency", str(concurrency or 2)]
    else:
        # Sending waits on the database and the mail server about half the time, so two
        # processes per core beat Celery's default of one (bench/throughput.py: 680/s with
        # 4 processes against 500/s with 2 on a 2-core machine). Capped, because each
        # process holds its own database connections.
        args += ["--concurrency", str(concurrency or min(8, 2 * (os.cpu_count() or 1)))]
    return args


@click.command()
@click.option("--concurrency", type=click.IntRange(1, 256), help="Parallel senders.")
def worker(concurrency: int | None) -> None:
    """Run a Celery worker that sends claimed emails.

    Example: NURTURE_BROKER_URL=redis://localhost:6379/0 nurture worker --concurrency 4
    """
    _open_keys()
    os.execv(sys.executable, _celery(*_worker_args(concurrency)))


@click.command()
def beat() -> None:
    """Run the scheduler that starts a dispatch pass every few seconds (run exactly one;
    a second is harmless, since claims are atomic, but wasteful).

    Example: nurture beat
    """
    os.execv(sys.executable, _celery("beat", "--loglevel", "INFO", "--schedule", _beat_file()))


def _beat_file() -> str:
    return os.environ.get("NURTURE_BEAT_SCHEDULE_FILE", "celerybeat-schedule")


# gunicorn hands each connection a thread of its own until its request has arrived, so a
# client that sends its headers a line at a time holds one for as long as it likes (slowloris:
# four of them starved the 4 threads we had, and /healthz with them). A thread waiting on a
# socket costs next to nothing, so there are many: 32 slow clients per process before anyone
# waits, while at most 30 requests of a process can use the database at once anyway (its
# pool, nurture/db.py). Busy threads do cost: under a load that keeps them all running, the
# slowest answers take longer than with 4 (they share one interpreter lock), a price paid
# only at loads far above a practice's (bench/slow_clients.py has both figures). This only
# raises the bar: in front of the public, a reverse proxy must take whole requests before it
# passes them on (docs/operations.md, "Going live").
WEB_THREADS = 32
# Idle kept-alive connections wait in gunicorn's poller, not in a thread; 5 s lets a browser
# (or the proxy) send its next request on the same connection.
WEB_KEEPALIVE_SECONDS = 5
# A stopping web server finishes the requests it has for this long, then closes: under
# STOP_SECONDS, so `nurture run` never has to kill it.
WEB_GRACEFUL_SECONDS = 10


def _web_command(host: str, port: int) -> list[str]:
    # gunicorn in both modes; production gets two workers per core (WEB_CONCURRENCY
    # overrides). No access log: paths carry tokens and client addresses are personal data.
    production = current().settings.env == "production"
    workers = os.environ.get("WEB_CONCURRENCY") or (
        str(max(2, (os.cpu_count() or 1) * 2)) if production else "1"
    )
    return [
        sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}",
        "--workers", workers, "--worker-class", "gthread", "--threads", str(WEB_THREADS),
        "--keep-alive", str(WEB_KEEPALIVE_SECONDS),
        "--graceful-timeout", str(WEB_GRACEFUL_SECONDS),
        "nurture.web.app:create_app()",
    ]  # fmt: skip


def _port_is_free(host: str, port: int) -> None:
    """A port already taken stops here with one line, before gunicorn starts and prints
    five tracebacks while `nurture run` says it is running."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        raise NurtureError(f"--host {host}: not an address of this machine") from None
    with socket.socket(family, kind, proto) as probe:
        # As gunicorn binds: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise NurtureError(
                    f"port {port} on {host} is already in use (is nurture already running?): "
                    f"stop it, or choose another with --port"
                ) from None
            raise NurtureError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _links_follow(host: str, port: int) -> str:
    """The base URL links will carry, for a server on host:port. In development with no
    NURTURE_BASE_URL, links follow --host/--port: the children (web, worker) read it from
    the environment. A NURTURE_BASE_URL naming this machine on another port is said at
    start, since every link in every email would go where nothing listens."""
    settings = current().settings
    if "base_url" not in settings.model_fields_set:
        if settings.env == "development":
            os.environ["NURTURE_BASE_URL"] = listening_url(host, port)
            return os.environ["NURTURE_BASE_URL"]
        return settings.base_url
    if base_url_elsewhere(settings.base_url, host, port):
        say(
            f"warning: NURTURE_BASE_URL is {settings.base_url}, but nurture listens on "
            f"{host}:{port}: links in emails will point where nothing listens "
            "(unset NURTURE_BASE_URL in development, or make the two agree)",
            err=True,
        )
    return settings.base_url


def _prepare_embedded_broker() -> None:
    """Create the SQLite broker's tables and queue once, before worker and beat race to."""
    settings = current().settings
    if settings.broker_url.startswith("sqla+"):
        from kombu import Connection, Queue

        with Connection(settings.broker_url) as conn:
            Queue(settings.queue).bind(conn.default_channel).declare()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def web(host: str, port: int) -> None:
    """Serve the signup, confirm and unsubscribe pages (gunicorn when NURTURE_ENV=production).

    Example: nurture web --host 0.0.0.0 --port 8000
    """
    _port_is_free(host, port)
    _open_keys()
    _say_where_the_forms_are(_links_follow(host, port))
    cmd = _web_command(host, port)
    os.execv(cmd[0], cmd)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--concurrency", type=click.IntRange(1, 256), help="Parallel senders.")
def run(host: str, port: int, concurrency: int | None) -> None:
    """Run web, worker and beat together on the current settings (embedded by default:
    SQLite, no Redis, mail to ./outbox). Stops all three on Ctrl-C.

    Example: nurture run --port 8000
    """
    from nurture.migrations import upgrade

    _port_is_free(host, port)
    upgrade(current().settings.database_url, settings=current().settings)
    _open_keys()
    _prepare_embedded_broker()
    current().settings.secret  # noqa: B018  (warns here, once, if it is the development key)
    base_url = _links_follow(host, port)
    worker_cmd = _celery(*_worker_args(concurrency), "--beat", "--schedule", _beat_file())
    procs = [_start(_web_command(host, port)), _start(worker_cmd)]
    click.echo(f"nurture is running on {listening_url(host, port)}  (Ctrl-C stops it)")
    _say_where_the_forms_are(base_url)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.5)
    finally:
        _stop(procs)
    failed = [p for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
    if failed and not stopping:
        sys.exit(1)


def _say_where_the_forms_are(base_url: str) -> None:
    from nurture.db import reading
    from nurture.sequences.services import open_forms

    with reading() as s:
        slugs = [seq.slug for seq in open_forms(s)]
    if not slugs:
        say("no signup forms yet: `nurture sequences apply templates/sequences` makes one")
    for slug in slugs:
        say(f"  signup form: {base_url}/subscribe/{slug}")


def _start(cmd: list[str]) -> subprocess.Popen[bytes]:
    """A child that ends with this process (nurture/process_tree.py): the kernel sends it
    SIGTERM when we die, even by SIGKILL, and it leads a process group of its own, so that
    one killpg ends it with everything it started. Ctrl-C reaches only us: we pass it on
    once, as SIGTERM, instead of every process getting its own SIGINT. (Out of the
    terminal's foreground group, a child must not read it: its stdin is empty.)"""
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=child_of_this_process()
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # Not reaped yet, so its group is still ours: it, and all it started, go now.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@click.command()
@click.option(
    "--via-workers",
    is_flag=True,
    help="Hand the claimed work to the Celery workers instead of sending it here.",
)
@click.option("--inline", is_flag=True, hidden=True, help="Send here (the default).")
def dispatch(via_workers: bool, inline: bool) -> None:
    """One pass: claim everything due now and send it, in this process (for cron and tests).

    No worker or broker is needed. With --via-workers the claimed batches go to the Celery
    workers instead, as beat does every few seconds.

    Example: nurture dispatch
    """
    from nurture.delivery.dispatch import dispatch_once

    if via_workers and not inline:
        from nurture.celery_app import enqueue_batch

        result = dispatch_once(enqueue_batch)
        click.echo(
            f"claimed {result.claimed}, reclaimed {result.reclaimed}, "
            f"queued {result.batches} batch(es) for the workers"
        )
        return
    from nurture.delivery.sending import send_batch

    sent = failed = 0
    tried: list[int] = []

    def send_here(ids: list[int]) -> None:
        nonlocal sent, failed
        tried.extend(ids)
        outcome = send_batch(ids)
        sent += len(outcome.sent)
        failed += len(outcome.failed)

    result = dispatch_once(send_here)
    say(
        f"claimed {result.claimed}, reclaimed {result.reclaimed}, sent {sent}"
        + (f", failed {failed} (see `nurture deliveries list --status failed`)" if failed else "")
    )
    _report_deferred(tried)


def _report_deferred(ids: list[int]) -> None:
    """ "sent 0" alone hides a mail server that is down: say what waits, why, and until when."""
    from nurture.clock import now
    from nurture.db import reading
    from nurture.reports import deferred_among

    with reading() as s:
        deferred = deferred_among(s, ids)
    if not deferred.count:
        return
    why = f" ({deferred.reason.splitlines()[0][:160]})" if deferred.reason else ""
    later = ""
    if deferred.next_try is not None:
        minutes = max(0, round((deferred.next_try - now()).total_seconds() / 60))
        later = f"; next try from {when(deferred.next_try, named=True)} (in {minutes} min)"
    say(
        f"deferred {deferred.count}: the mail server did not take them{why}{later}, by the next "
        "dispatch pass (see `nurture deliveries list --status queued`)"
    )
