#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) inside the new environment of envs/robrepro.yaml, from the workflow's
# working directory (the repository root). Snakemake runs a copy of this script, so it finds the
# checkout through the working directory, not through its own path.
set -euo pipefail
if [ ! -f src/robrepro/__init__.py ]; then
    echo "robrepro.post-deploy.sh: no src/robrepro under $PWD; run Snakemake from the repository root" >&2
    exit 1
fi
# The checkout's src/ on the environment's path: the jobs run the code the rules track (no copy of
# it in the environment that a code change would leave behind).
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n' "$PWD/src" > "$site/robrepro-checkout.pth"
# As envs/setup.sh: torchattacks' metadata pins an old requests it never imports.
python -m pip install --disable-pip-version-check -q --no-deps torchattacks==3.5.1
