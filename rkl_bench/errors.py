"""The one exception type users see.

Every bad input (file, config key, CLI flag) raises :class:`RklBenchError` with a
single line that names the problem and the fix. The CLI turns it into
``error: <message>`` on stderr and exit status 2, with no traceback.
"""


class RklBenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""
