import sys

from .warm import delegate

# A train or evaluate job runs in the warm server's forked worker when a local run started one
# (robrepro.warm); delegate() exits with the job's status then, and returns otherwise.
delegate(sys.argv[1:])

from .cli import main  # noqa: E402  (after delegating: a delegated job never imports it here)

main()
