#!/usr/bin/env bash
# Installs the servers the integration tests start: InspIRCd 3 + Atheme services and ngIRCd
# (Debian packages), and Synapse (PyPI, in a venv).
# Idempotent: installs only what is missing. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v inspircd >/dev/null || [ -x /usr/sbin/inspircd ] || need_apt+=(inspircd)
command -v atheme-services >/dev/null || need_apt+=(atheme-services)
command -v ngircd >/dev/null || [ -x /usr/sbin/ngircd ] || need_apt+=(ngircd)
command -v openssl >/dev/null || need_apt+=(openssl)

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    # The packages may start system-wide instances; the tests start their own on free ports
    # and do not need those.
fi

# Synapse in a venv (the tests find it at $BRIDGEWARDEN_SYNAPSE_VENV, default target/synapse-venv).
venv="${BRIDGEWARDEN_SYNAPSE_VENV:-target/synapse-venv}"
if ! "$venv/bin/python" -c "import synapse" 2>/dev/null; then
    echo "installing matrix-synapse into $venv"
    command -v python3 >/dev/null || { echo "python3 is needed for Synapse" >&2; exit 1; }
    python3 -m venv "$venv" 2>/dev/null || {
        "${sudo_cmd[@]:-}" apt-get install -y -qq --no-install-recommends python3-venv
        python3 -m venv "$venv"
    }
    "$venv/bin/pip" install -q --disable-pip-version-check "matrix-synapse"
fi

# The tests run the servers from PATH; Debian puts some in /usr/sbin.
for bin in inspircd ngircd; do
    command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "missing $bin after install" >&2; exit 1; }
done
echo "test servers ready"
