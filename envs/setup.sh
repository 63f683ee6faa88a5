#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with the pinned stack.
#   bash envs/setup.sh          runtime + test dependencies, robrepro installed editable
# Idempotent: a stamp of the requirement files is kept in .venv, so a second call with nothing
# changed returns at once. PYTHON selects the interpreter (default python3, needs >= 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${ROBREPRO_VENV:-.venv}
stamp_src=$(cat envs/constraints.txt envs/requirements.txt envs/requirements-test.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.robrepro-stamp" ] && [ "$(cat "$VENV/.robrepro-stamp")" = "$stamp_src" ]; then
    exit 0
fi
echo "[setup] creating environment in $VENV" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install -c envs/constraints.txt -r envs/requirements.txt -r envs/requirements-test.txt
# Metadata of torchattacks pins an old requests it never imports: install it without dependencies.
"${pip[@]}" install -c envs/constraints.txt --no-deps torchattacks==3.5.1
"${pip[@]}" install -c envs/constraints.txt --no-deps -e .
echo "$stamp_src" > "$VENV/.robrepro-stamp"
echo "[setup] done" >&2
