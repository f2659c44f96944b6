#!/usr/bin/env bash
# Install what machined needs on Debian 12 (root): system tools, a virtualenv with the
# Python dependencies in .venv/, and `machined` + `mc` on the PATH. Safe to run again.
# --systemd also installs and enables packaging/systemd/machined.service (machined starts at
# boot, autostarts instances, and stops them cleanly when the host powers off).
set -euo pipefail
cd "$(dirname "$0")/.."

systemd=false
for arg in "$@"; do
    case "$arg" in
        --systemd) systemd=true ;;
        -h|--help) echo "usage: scripts/setup.sh [--systemd]"; exit 0 ;;
        *) echo "Error: unknown option '$arg' (accepted: --systemd)" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    echo "Error: run as root (machined creates namespaces, mounts and cgroups)" >&2
    exit 1
fi

packages=(python3 python3-venv debootstrap squashfs-tools xz-utils zstd uidmap util-linux
          coreutils tar gzip btrfs-progs iproute2 dnsmasq-base nftables)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Image recipes use `apt-get download`, which needs package lists even when nothing is missing.
if [ "${#missing[@]}" -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "Installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat

for tool in machined mc; do
    ln -sf "$PWD/.venv/bin/$tool" "/usr/local/bin/$tool"
done
echo "machined and mc are installed in /usr/local/bin"

if $systemd; then
    install -m644 packaging/systemd/machined.service /etc/systemd/system/machined.service
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        # A machined started by hand on /var/lib/machined must be stopped first (one daemon
        # per state directory): SIGTERM stops it and leaves its instances running.
        systemctl enable --now machined.service
        echo "machined.service is installed, enabled and running"
    else
        systemctl enable machined.service
        echo "machined.service is installed and enabled (systemd is not running: it starts" \
             "at the next boot)"
    fi
fi
