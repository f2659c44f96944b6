#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: set up, start machined, build the Debian 12
# image (cached), launch a container and run a command in it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export MACHINED_DIR="${MACHINED_DIR:-/var/lib/machined}"
if ! mc info >/dev/null 2>&1; then
    echo "Starting machined (log: $MACHINED_DIR/logs/machined.log)"
    setsid machined >/dev/null 2>&1 < /dev/null &
    for _ in $(seq 50); do mc info >/dev/null 2>&1 && break; sleep 0.2; done
fi

mc image build images/debian-12.yaml --alias debian/12
mc info c01 >/dev/null 2>&1 || mc launch debian/12 c01
for _ in $(seq 60); do
    state=$(mc exec c01 -- systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.5
done
echo "systemctl is-system-running: $state"
mc exec c01 -- cat /etc/os-release
mc list
