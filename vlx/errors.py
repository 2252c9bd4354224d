"""The error for bad user input: the CLI turns it into one line and exit status 2."""


class InputError(ValueError):
    """Bad input from a person (a file, a name, an index); the message names the bad value
    and what would be valid."""
