"""A staging step that cannot go on: the message says what and what to do (the CLI prints it, no traceback)."""


class StageError(Exception):
    pass
