#!/usr/bin/env bash
# Installs the servers the integration tests start: InspIRCd 3 + Atheme services and ngIRCd
# (Debian packages), and Synapse (PyPI, in a venv) once the Matrix side needs it.
# Idempotent: installs only what is missing. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v inspircd >/dev/null || [ -x /usr/sbin/inspircd ] || need_apt+=(inspircd)
command -v atheme-services >/dev/null || need_apt+=(atheme-services)
command -v ngircd >/dev/null || [ -x /usr/sbin/ngircd ] || need_apt+=(ngircd)
command -v openssl >/dev/null || need_apt+=(openssl)

if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    # The packages may start system-wide instances; the tests start their own on free ports
    # and do not need those.
fi

# The tests run the servers from PATH; Debian puts some in /usr/sbin.
for bin in inspircd ngircd; do
    command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "missing $bin after install" >&2; exit 1; }
done
echo "test servers ready"
