"""The one exception type that means "the user gave us something we cannot use"."""


class UserError(Exception):
    """Bad input from the user: the CLI prints ``prefrl: <message>`` and exits with code 2.

    The message is one line that names the problem and what to do about it.
    Raise it at the boundary where the bad input enters, before anything on disk changes.
    """
