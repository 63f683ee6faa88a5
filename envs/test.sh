#!/usr/bin/env bash
# Set up the environment (envs/setup.sh) and run the whole test suite.
# Extra arguments go to pytest, e.g.  bash envs/test.sh -k attacks
set -euo pipefail
cd "$(dirname "$0")/.."
bash envs/setup.sh
exec .venv/bin/python -m pytest "$@"
