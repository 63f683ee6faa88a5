#!/usr/bin/env bash
# Build an offline wheelhouse: wheels of the pinned stack for a target platform and Python version,
# plus this project's own wheel, so that a machine without internet (a cluster's compute node) can
# install everything with pip --no-index.
#
#   bash envs/wheelhouse.sh [options]
#     --dest DIR              where the wheels go (default: wheelhouse)
#     --platform TAG          a wheel platform tag; repeatable (default: the manylinux x86_64 tags
#                             manylinux_2_28, manylinux_2_17, manylinux2014)
#     --python-version X.Y    the target's Python (default: this interpreter's)
#     --minimal               only what `python -m robrepro selfcheck` needs: torch, torchvision,
#                             torchdiffeq, numpy, scipy, pandas, pyyaml (no Snakemake)
#     --project-only          only this project's wheel (no download)
#     --dry-run               print the pip commands, run none
#
# On the target, from the repository (or with the wheelhouse copied there):
#   python -m venv .venv
#   .venv/bin/pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt
#   .venv/bin/pip install --no-index --find-links wheelhouse --no-deps robrepro
#   .venv/bin/pip install --no-index --find-links wheelhouse --no-deps torchattacks   # full stack only
#
# Downloads use pip's usual index settings (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL): point them at the
# PyTorch index of your CUDA version if the cluster's driver needs another build than PyPI's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

dest=wheelhouse
platforms=()
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
minimal=0
project_only=0
dry=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dest) [ $# -ge 2 ] || usage; dest=$2; shift 2 ;;
        --platform) [ $# -ge 2 ] || usage; platforms+=("$2"); shift 2 ;;
        --python-version) [ $# -ge 2 ] || usage; pyver=$2; shift 2 ;;
        --minimal) minimal=1; shift ;;
        --project-only) project_only=1; shift ;;
        --dry-run) dry=1; shift ;;
        -h|--help) usage ;;
        *) echo "wheelhouse.sh: unknown argument $1" >&2; usage ;;
    esac
done
if ! [[ $pyver =~ ^3\.[0-9]+$ ]]; then
    echo "wheelhouse.sh: --python-version must look like 3.12, not $pyver" >&2
    exit 2
fi
[ ${#platforms[@]} -gt 0 ] || platforms=(manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)

run() {
    echo "+ $*" >&2
    [ "$dry" = 1 ] || "$@"
}

run mkdir -p "$dest"
# The project's wheel, built from this checkout (no build isolation: setuptools from this environment, offline).
run "$PY" -m pip wheel --disable-pip-version-check -q --no-deps --no-build-isolation -w "$dest" .
[ "$project_only" = 1 ] && exit 0

reqs="$dest/requirements.txt"
if [ "$minimal" = 1 ]; then
    # The self-check's stack: the pinned versions of these packages only.
    pattern='^(torch|torchvision|torchdiffeq|numpy|scipy|pandas|pyyaml)=='
else
    pattern='^[A-Za-z0-9]'
fi
if [ "$dry" = 1 ]; then
    echo "+ grep -E '$pattern' envs/requirements.txt > $reqs" >&2
else
    grep -E "$pattern" envs/requirements.txt > "$reqs"
fi
plat_args=()
for p in "${platforms[@]}"; do plat_args+=(--platform "$p"); done
pip_dl=("$PY" -m pip download --disable-pip-version-check -q --only-binary=:all: --implementation cp
    --python-version "$pyver" "${plat_args[@]}" -d "$dest" -c envs/constraints.txt)
run "${pip_dl[@]}" -r "$reqs"
# Its metadata pins an old requests it never imports (as in envs/setup.sh): without dependencies.
[ "$minimal" = 1 ] || run "${pip_dl[@]}" --no-deps torchattacks==3.5.1
echo "[wheelhouse] $dest: wheels for Python $pyver on ${platforms[*]}" >&2
