"""The one base of every mistake a user can fix, and its exit code.

Every binary lets a `UserError` reach `genesis_tf.cli.run_main`, which prints it as one
line (`error: <what is wrong and how to fix it>`) and exits with `exit_code`; --verbosity
adds the traceback. Subclasses also derive from the built-in type they replaced
(ValueError, RuntimeError, ...), so code that catches those keeps working.

    exit 2  a configuration, dataset, checkpoint or flag problem (the default)
    exit 3  training diverged (genesis_tf.training.TrainingDivergedError)
"""


class UserError(Exception):
    """A problem with what the user asked for or gave; the message says how to fix it."""

    exit_code = 2
