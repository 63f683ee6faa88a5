#!/usr/bin/env bash
# Set up the environment (envs/setup.sh) and run the whole test suite.
# Extra arguments go to pytest, e.g.  bash envs/test.sh -k attacks   (runs serially).
# With none, two pytest-xdist workers share the tests (each test keeps to one thread); tests that
# share the smoke workflow's run or the SLURM cluster stay on one worker (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash envs/setup.sh
if [ $# -eq 0 ]; then
    set -- -n 2 --dist loadgroup
fi
exec .venv/bin/python -m pytest "$@"
