#!/usr/bin/env bash
# Install cnm as a systemd service on this host (as root), from a clone of the repository or
# a built wheel:
#   bash packaging/install.sh                 # build from this clone
#   bash packaging/install.sh cnm-*.whl       # install that wheel
# Puts cnm in a virtualenv at /opt/cnm, creates the system user `cnm`, installs
# /etc/cnm/cnm.toml (kept if it exists) and /etc/systemd/system/cnm.service. Does not start
# anything: edit /etc/cnm/cnm.toml, check it, then `systemctl enable --now cnm`.
# Safe to run again (an upgrade: the new version is installed, the settings and data are kept).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=/opt/cnm
if [ "$(id -u)" -ne 0 ]; then
    echo "install: run as root" >&2
    exit 1
fi
if ! command -v etcd >/dev/null 2>&1; then
    echo "install: etcd is not on PATH; on Debian: apt-get install etcd-server && systemctl disable --now etcd" >&2
    exit 1
fi
source="${1:-.}"
[ -x "$PREFIX/bin/python" ] || python3 -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install -q --upgrade "$source"

if ! getent passwd cnm >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/cnm --no-create-home \
        --shell /usr/sbin/nologin --comment "cnm agent" cnm
fi
install -d -m 0755 /etc/cnm
if [ ! -f /etc/cnm/cnm.toml ]; then
    install -m 0644 packaging/cnm.toml /etc/cnm/cnm.toml
fi
install -m 0644 packaging/cnm.service /etc/systemd/system/cnm.service
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "install: cnm $("$PREFIX/bin/cnm" --version 2>/dev/null || true) in $PREFIX"
echo "next: set addr in /etc/cnm/cnm.toml, then"
echo "  $PREFIX/bin/cnm node run --config /etc/cnm/cnm.toml --check-config"
echo "  systemctl enable --now cnm && journalctl -u cnm -f"
