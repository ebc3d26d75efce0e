"""`python -m pushctl`: the operator CLI (contract section 4).

Sends notifications by enqueueing push jobs on the `push-jobs` queue, shows a job's status and its
per-recipient report, and lists registrations. It reaches storage the way the function app does
(`shared.settings`, `shared.runtime`) and resolves audiences with the service's own code
(`shared.dispatch`), so a dry run counts exactly whom a send would reach. See
docs/operator-guide.md.
"""

from pushctl.cli import app, main

__all__ = ["app", "main"]
