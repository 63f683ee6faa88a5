#!/usr/bin/env bash
# install.sh: install the Debian packages for the one-node test cluster (tests/slurm/cluster.py).
#
# Idempotent: packages that are already installed are skipped, and nothing is
# fetched when all of them are there. Needs root and apt (Debian 12 ships
# Slurm 22.05, munge 0.5 and MariaDB 10.11). The Debian postinst scripts try to
# start the packaged services; without systemd they are refused, which is what
# we want: the fixture runs its own daemons on its own state folder.
#
#   tests/slurm/install.sh          # slurmctld slurmd slurm-client munge slurmdbd mariadb-server
set -euo pipefail

pkgs=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$p")
done

if (( ${#missing[@]} == 0 )); then
    echo "install.sh: all packages present (${pkgs[*]})"
    exit 0
fi

if [[ $(id -u) != 0 ]]; then
    echo "install.sh: need root to install: ${missing[*]}" >&2
    exit 1
fi

echo "install.sh: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
