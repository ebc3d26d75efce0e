"""Run the function app on this machine without Azure Functions Core Tools (contract section 5).

`python -m devhost` loads every function folder from its own `function.json` and serves it the way
the Functions host does; `DevHost` does the same in-process, for tests.
"""

from devhost.app import DevHost, HostStartupError

__all__ = ["DevHost", "HostStartupError"]
