"""The one base class of errors in what the user asked for or gave.

A ``UserError`` is shown as its message alone, in one line and without a traceback, by every
command (``bonito_ray.cli``): its message names the file, row, flag or value and what is wrong with
it. Anything else that escapes a command is a fault of bonito-ray or its environment, and keeps its
traceback. Each subclass also keeps the built-in class it had (``ValueError``, ``RuntimeError``),
so code that catches those still does.
"""


class UserError(Exception):
    """A problem with the input, the output, the configuration or the cluster the user pointed at."""
