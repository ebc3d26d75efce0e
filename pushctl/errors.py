"""Exit codes and the one exception the commands raise to end with one of them.

Every failure the CLI foresees ends as one line on stderr and one of these codes, never a
traceback; they are listed in `--help` and docs/operator-guide.md, and scripts may rely on them.
"""

from __future__ import annotations

OK = 0
JOB_FAILED = 1      # `send --wait`: the job ended failed or cancelled
USAGE = 2           # invalid arguments, an invalid job, a missing or bad setting
STORAGE = 3         # storage unreachable, or access refused
NOT_FOUND = 4       # `status` / `report`: no such job
INTERNAL = 70       # a bug (EX_SOFTWARE); PUSHCTL_DEBUG=1 shows the traceback
INTERRUPTED = 130   # Ctrl-C (128 + SIGINT); with `send --wait` the job itself carries on

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 `send --wait`: the job ended failed or cancelled; "
    "2 invalid input or settings; 3 storage unreachable or access refused; "
    "4 no such job; 130 interrupted (Ctrl-C stops waiting, never the job)."
)


class CliError(Exception):
    """A failure to report as one line on stderr and exit with `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def usage(message: str) -> CliError:
    return CliError(message, USAGE)
