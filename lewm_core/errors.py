"""The one exception type for bad user input.

A `UserError` carries a single line that names the problem and the fix. The CLI prints it as
`error: <message>` and exits with status 2, without a traceback; the lab shows it in a box.
"""


class UserError(Exception):
    """Bad input (a path, a value, a file): the message names the problem and the fix."""
