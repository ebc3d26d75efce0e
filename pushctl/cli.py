"""The command line (typer): parse, call `pushctl.ops`, print with `pushctl.render`, map failures
to the exit codes of `pushctl.errors`. Run as `python -m pushctl` from the repository root."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from azure.core.exceptions import AzureError
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from pushctl import connect, ops, render
from pushctl.build import (
    NotificationArgs,
    TargetArgs,
    build_job,
    check_job_id,
    expand_toast,
    listing_target,
)
from pushctl.errors import (
    EXIT_CODES_HELP,
    INTERNAL,
    INTERRUPTED,
    JOB_FAILED,
    NOT_FOUND,
    CliError,
    usage,
)
from shared import runtime
from shared.errors import StorageError
from shared.jobs import Job
from shared.settings import Settings

T = TypeVar("T")
PROG = "python -m pushctl"


class _Group(TyperGroup):
    """Lets `--toast TITLE LINE...` take several values, as the contract writes it."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_toast(args))


app = typer.Typer(
    name="pushctl",
    cls=_Group,
    help="Send push notifications to Windows apps and follow them (the operator CLI of winpush).",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class XmlType(StrEnum):
    toast = "toast"
    tile = "tile"
    badge = "badge"


class Outcome(StrEnum):
    delivered = "delivered"
    removed = "removed"
    failed = "failed"


_STORAGE = "Storage (default: AzureWebJobsStorage from the environment or local.settings.json)"
Connection = Annotated[str | None, typer.Option(
    "--connection", metavar="STRING", rich_help_panel=_STORAGE,
    help="A storage connection string; UseDevelopmentStorage=true for Azurite.")]
Account = Annotated[str | None, typer.Option(
    "--account", metavar="NAME", rich_help_panel=_STORAGE,
    help="A storage account name, reached with Azure AD sign-in (DefaultAzureCredential).")]
AccountUrl = Annotated[str | None, typer.Option(
    "--account-url", metavar="URL", rich_help_panel=_STORAGE,
    help="An account endpoint, https://NAME.table.core.windows.net, with Azure AD sign-in.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


# ---- plumbing -------------------------------------------------------------------------------------


def _say(message: str) -> None:
    typer.echo(f"pushctl: {message}", err=True)


@contextlib.contextmanager
def _exits() -> Iterator[None]:
    """Every failure as one line on stderr and an exit code; never a traceback."""
    try:
        yield
    except CliError as exc:
        _say(exc.message)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        _say("interrupted")
        raise typer.Exit(INTERRUPTED) from None
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if os.environ.get("PUSHCTL_DEBUG"):
            raise
        _say(f"internal error: {type(exc).__name__}: {exc} (set PUSHCTL_DEBUG=1 for the traceback)")
        raise typer.Exit(INTERNAL) from None


def _run(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """Run one piece of async work on a fresh loop, close the clients, map storage faults."""

    async def main() -> T:
        try:
            return await work()
        finally:
            with contextlib.suppress(Exception):
                await runtime.reset()

    try:
        return asyncio.run(main())
    except BrokenPipeError:
        raise
    except (StorageError, AzureError, OSError) as exc:
        raise connect.storage_error(settings.storage, exc) from None


def _not_found(job_id: str) -> CliError:
    return CliError(f"no job {job_id!r} (a job gets its record when the function app takes it off the "
                    "queue; if you just sent it, try again in a moment)", NOT_FOUND)


# ---- send -----------------------------------------------------------------------------------------

_TARGET = "Target (combine with AND; --all stands alone)"
_NOTE = "Notification (one of --toast, --xml, --raw)"
_OPTS = "Notification options"


@app.command(epilog=EXIT_CODES_HELP)
def send(
    all_: Annotated[bool, typer.Option("--all", rich_help_panel=_TARGET,
                                       help="Every registration. Cannot be combined with other targets.")] = False,
    user: Annotated[list[str] | None, typer.Option("--user", "-u", metavar="USER", rich_help_panel=_TARGET,
                                                   help="A user's installs (repeat for several users).")] = None,
    device: Annotated[list[str] | None, typer.Option("--device", "-d", metavar="DEVICE", rich_help_panel=_TARGET,
                                                     help="One install by deviceId (repeatable).")] = None,
    tags: Annotated[str | None, typer.Option("--tags", metavar="EXPR", rich_help_panel=_TARGET,
                                             help="A tag expression: 'news && (lang:en || lang:fr) && !muted'.")
                    ] = None,
    toast: Annotated[list[str] | None, typer.Option(
        "--toast", metavar="TEXT...", rich_help_panel=_NOTE,
        help="A toast from 1 to 4 lines, title first: --toast 'Title' 'Body' (or repeat --toast).")] = None,
    launch: Annotated[str | None, typer.Option("--launch", metavar="ARG", rich_help_panel=_NOTE,
                                               help="With --toast: the argument the app gets when clicked.")] = None,
    xml: Annotated[str | None, typer.Option("--xml", metavar="FILE", rich_help_panel=_NOTE,
                                            help="The notification's XML from a file ('-' reads stdin).")] = None,
    type_: Annotated[XmlType | None, typer.Option("--type", rich_help_panel=_NOTE,
                                                  help="With --xml: toast (default), tile or badge.")] = None,
    raw: Annotated[str | None, typer.Option("--raw", metavar="TEXT", rich_help_panel=_NOTE,
                                            help="A raw notification: the text goes to the app as is.")] = None,
    ttl: Annotated[int | None, typer.Option("--ttl", metavar="SECONDS", rich_help_panel=_OPTS,
                                            help="Drop the notification if not delivered within this time.")
                   ] = None,
    cache: Annotated[bool | None, typer.Option("--cache/--no-cache", rich_help_panel=_OPTS, show_default=False,
                                               help="Tile, badge, raw: cache while the device is offline.")
                     ] = None,
    tag: Annotated[str | None, typer.Option("--tag", metavar="TAG", rich_help_panel=_OPTS,
                                            help="Tile: the X-WNS-Tag (at most 16 characters).")] = None,
    priority: Annotated[int | None, typer.Option("--priority", metavar="1-4", rich_help_panel=_OPTS,
                                                 help="X-WNS-PRIORITY, 1 (highest) to 4.")] = None,
    request_status: Annotated[bool, typer.Option("--request-status", rich_help_panel=_OPTS,
                                                 help="Ask WNS for the device's status (X-WNS-RequestForStatus).")
                              ] = False,
    job_id: Annotated[str | None, typer.Option(
        "--job-id", metavar="ID",
        help="Your id for the job (1-64 of A-Z a-z 0-9 . _ -): a job id is sent at most once. Default: new.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Resolve and count the audience, show a sample; send and enqueue nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job with a progress bar until it is done.")
                    ] = False,
    as_json: AsJson = False,
    connection: Connection = None,
    account: Account = None,
    account_url: AccountUrl = None,
) -> None:
    """Send a notification: enqueue a push job on PUSH_JOBS_QUEUE (default push-jobs).

    Prints the job id (--json: {"jobId": ...}; with --wait, the job's final status).
    """
    with _exits():
        if dry_run and wait:
            raise usage("--dry-run sends nothing, so there is nothing to --wait for")
        job = build_job(
            job_id,
            TargetArgs(all=all_, users=user or (), devices=device or (), tags=tags),
            NotificationArgs(
                toast=toast or (), launch=launch, xml=xml,
                xml_type=type_.value if type_ is not None else None, raw=raw, ttl=ttl, cache=cache, tag=tag,
                priority=priority, request_status=request_status,
            ),
        )
        settings = connect.load(connection=connection, account=account, account_url=account_url)
        if dry_run:
            _dry_run(settings, job, as_json, job_id_given=job_id is not None)
            return
        submitted = _run(settings, lambda: ops.submit(settings, job))
        previous = submitted.previous
        if previous is not None:
            detail = f": {previous['error']}" if previous.get("error") else ""
            if submitted.enqueued:
                _say(f"job {job.job_id} was rejected before{detail}; this job replaces it")
            else:
                _say(f"job {job.job_id} already exists ({previous['state']}{detail}); a job id is sent at most "
                     "once, so nothing was enqueued (give a new --job-id to send again)")
        if not wait:
            if as_json:
                extra = {} if submitted.enqueued else {"alreadyAccepted": True}
                typer.echo(render.dumps({"jobId": job.job_id, **extra}))
            else:
                typer.echo(job.job_id)
                if submitted.enqueued:
                    _say(f"enqueued on {settings.push_jobs_queue}; follow it with: {PROG} status {job.job_id}")
            return
        if not as_json:
            typer.echo(job.job_id)
        stale = previous["createdAt"] if submitted.enqueued and previous is not None else None
        status = _wait(settings, job.job_id, stale)
        if as_json:
            typer.echo(render.dumps(status))
        else:
            render.console().print(render.status_table(status))
            _say(render.summary_line(status))
        if status["state"] != "completed":
            raise typer.Exit(JOB_FAILED)


def _dry_run(settings: Settings, job: Job, as_json: bool, job_id_given: bool) -> None:
    err = render.console(stderr=True)
    with err.status("resolving the audience...") as spinner:
        result = _run(settings, lambda: ops.dry_run(
            settings, job, lambda n: spinner.update(f"resolving the audience... {n} so far")))
    doc = render.dry_run_json(job.to_json(), result.targeted, result.sample, result.existing, job_id_given)
    if as_json:
        typer.echo(render.dumps(doc))
    else:
        out = render.console()
        name = f"job {job.job_id}" if job_id_given else "this job"
        out.print(f"dry run: {name} ({doc['type']}) would reach {result.targeted} "
                  f"registration{'s' if result.targeted != 1 else ''}; nothing was sent or enqueued", markup=False)
        if result.sample:
            out.print(render.sample_table(result.sample))
    if result.existing is not None:
        _say(f"note: job id {job.job_id} is already taken ({result.existing['state']}); a real send "
             "with it would be dropped")


def _wait(settings: Settings, job_id: str, stale: str | None) -> dict[str, Any]:
    err = render.console(stderr=True)
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(), console=err, disable=not err.is_terminal,
    )
    task = progress.add_task(f"job {job_id}", total=None, counts="waiting for the function app to take the job")

    def update(status: dict[str, Any] | None) -> None:
        if status is None:
            return
        done = status["delivered"] + status["removed"] + status["failed"]
        counts = (f"{status['state']}: {status['delivered']} delivered, {status['removed']} removed, "
                  f"{status['failed']} failed")
        if status["state"] in ops.TERMINAL_STATES:
            progress.update(task, counts=counts, total=max(done, 1), completed=max(done, 1))
        else:
            # Batches add their counts as they finish, so the total is not known before the end.
            left = status["pendingBatches"]
            progress.update(task, counts=f"{counts} ({left} batch{'es' if left != 1 else ''} left)", completed=done)

    try:
        with progress:
            return _run(settings, lambda: ops.wait(settings, job_id, update, stale=stale))
    except KeyboardInterrupt:
        raise CliError(f"stopped waiting; job {job_id} carries on (see: {PROG} status {job_id})",
                       INTERRUPTED) from None


# ---- status, report, channels ---------------------------------------------------------------------


@app.command(epilog=EXIT_CODES_HELP)
def status(
    job: Annotated[str, typer.Argument(metavar="JOB", help="The job id.")],
    as_json: AsJson = False,
    connection: Connection = None,
    account: Account = None,
    account_url: AccountUrl = None,
) -> None:
    """A job's state and counts: targeted, delivered, removed, failed."""
    _show_job(job, ops.job_status, as_json, connection, account, account_url)


@app.command(epilog=EXIT_CODES_HELP)
def cancel(
    job: Annotated[str, typer.Argument(metavar="JOB", help="The job id.")],
    as_json: AsJson = False,
    connection: Connection = None,
    account: Account = None,
    account_url: AccountUrl = None,
) -> None:
    """Stop a job: batches not yet started send nothing (one already sending finishes its page)."""
    _show_job(job, ops.cancel, as_json, connection, account, account_url)


def _show_job(job: str, action: Callable[[Settings, str], Awaitable[dict[str, Any] | None]], as_json: bool,
              connection: str | None, account: str | None, account_url: str | None) -> None:
    """Run `action` on a job and print the status it returns (exit 4 when there is no such job)."""
    with _exits():
        check_job_id(job)
        settings = connect.load(connection=connection, account=account, account_url=account_url)
        st = _run(settings, lambda: action(settings, job))
        if st is None:
            raise _not_found(job)
        if as_json:
            typer.echo(render.dumps(st))
        else:
            render.console().print(render.status_table(st))


@app.command(epilog=EXIT_CODES_HELP)
def report(
    job: Annotated[str, typer.Argument(metavar="JOB", help="The job id.")],
    outcome: Annotated[Outcome | None, typer.Option("--outcome", help="Only recipients with this outcome.")
                       ] = None,
    as_json: AsJson = False,
    connection: Connection = None,
    account: Account = None,
    account_url: AccountUrl = None,
) -> None:
    """What happened to each recipient of a job: outcome, HTTP status, X-WNS-Status, msg id, error."""
    with _exits():
        check_job_id(job)
        settings = connect.load(connection=connection, account=account, account_url=account_url)
        wanted = outcome.value if outcome is not None else None

        async def work() -> None:
            if await ops.job_status(settings, job) is None:
                raise _not_found(job)
            if as_json:
                writer = render.JsonArrayWriter(sys.stdout)
                async for row in ops.report(settings, job, wanted):
                    writer.add(row)
                writer.close()
                return
            rows = [row async for row in ops.report(settings, job, wanted)]
            out = render.console()
            if rows:
                out.print(render.report_table(rows))
            out.print(f"{len(rows)} recipient{'s' if len(rows) != 1 else ''}"
                      + (f" {wanted}" if wanted else ""), markup=False)

        _run(settings, work)


@app.command(epilog=EXIT_CODES_HELP)
def channels(
    user: Annotated[str | None, typer.Option("--user", "-u", metavar="USER", help="Only this user's installs.")
                    ] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", metavar="DEVICE", help="Only this install.")
                      ] = None,
    tags: Annotated[str | None, typer.Option("--tags", metavar="EXPR", help="Only installs matching the expression.")
                    ] = None,
    as_json: AsJson = False,
    connection: Connection = None,
    account: Account = None,
    account_url: AccountUrl = None,
) -> None:
    """The registrations (all, or those a send with the same target would reach).

    The table shows only each channel's host; --json gives the full registrations, channel URIs
    included, for scripts.
    """
    with _exits():
        target = listing_target(user, device, tags)
        settings = connect.load(connection=connection, account=account, account_url=account_url)

        async def work() -> None:
            if as_json:
                writer = render.JsonArrayWriter(sys.stdout)
                async for reg in ops.registrations(settings, target):
                    writer.add(render.registration_json(reg))
                writer.close()
                return
            regs = [reg async for reg in ops.registrations(settings, target)]
            out = render.console()
            if regs:
                out.print(render.channels_table(regs))
            out.print(f"{len(regs)} registration{'s' if len(regs) != 1 else ''}", markup=False)

        _run(settings, work)


def main(argv: Sequence[str] | None = None) -> int:
    """The process entry point: the exit code of the command."""
    import logging

    # The SDKs log failures (and every request) themselves; the CLI reports one line of its own.
    logging.getLogger("azure").setLevel(logging.CRITICAL)
    # The identity credential's HTTP sessions are not closed with the storage clients; at exit
    # asyncio would report them as "Unclosed client session", which is noise to an operator.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    try:
        app(args=list(sys.argv[1:] if argv is None else argv), prog_name=PROG)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


__all__ = ["app", "main"]
