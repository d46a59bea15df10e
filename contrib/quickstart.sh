#!/usr/bin/env bash
# Quick start: local InspIRCd + Atheme and Synapse on loopback, two Matrix users, a bridged room
# pair (#lobby:localhost <-> #lobby) and a moderators' room, and bridgewarden running with
# contrib/bridgewarden.example.toml and policies/default.toml. Ctrl-C stops everything.
#
#   contrib/quickstart.sh
#
# Needs: Debian/Ubuntu (apt for InspIRCd, Atheme; pip for Synapse), Rust 1.95, ports 6667,
# 8008 and 9184 free on 127.0.0.1. Everything lives in target/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
contrib/install-test-servers.sh

work="$root/target/quickstart"
venv="${BRIDGEWARDEN_SYNAPSE_VENV:-$root/target/synapse-venv}"
irc_port=6667 link_port=7001 matrix_port=8008
secret="quickstart-shared-secret-$RANDOM$RANDOM"
link_password="quickstart-link-$RANDOM$RANDOM"
for port in $irc_port $link_port $matrix_port 9184; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port on 127.0.0.1 is in use: stop what listens there first" >&2
        exit 1
    fi
done
rm -rf "$work"
mkdir -p "$work/data"
chmod 700 "$work"

pids=()
cleanup() {
    echo
    echo "stopping..."
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

fill() { # template -> stdout, replacing {key} placeholders
    sed -e "s|{client_port}|$irc_port|g" -e "s|{link_port}|$link_port|g" \
        -e "s|{tls_port}|6697|g" -e "s|{dir}|$work|g" -e "s|{password}|$link_password|g" \
        -e "s|{server_name}|localhost|g" -e "s|{port}|$matrix_port|g" -e "s|{secret}|$secret|g" "$1"
}
wait_port() {
    for _ in $(seq 1 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "nothing listens on 127.0.0.1:$1; see $work/*.log" >&2
    exit 1
}

echo "starting InspIRCd + Atheme on 127.0.0.1:$irc_port"
fill tests/servers/inspircd.conf >"$work/inspircd.conf"
fill tests/servers/atheme.conf >"$work/atheme.conf"
inspircd --nofork --runasroot --config "$work/inspircd.conf" >"$work/inspircd.log" 2>&1 &
pids+=($!)
wait_port $irc_port
atheme-services -n -c "$work/atheme.conf" -D "$work" -l "$work/atheme.log" -p "$work/atheme.pid" >"$work/atheme.out" 2>&1 &
pids+=($!)

echo "starting Synapse on 127.0.0.1:$matrix_port"
fill tests/servers/synapse.yaml >"$work/homeserver.yaml"
fill tests/servers/synapse-log.yaml >"$work/log.yaml"
(cd "$work" && "$venv/bin/python" -m synapse.app.homeserver -c homeserver.yaml --generate-keys >/dev/null)
(cd "$work" && exec "$venv/bin/python" -m synapse.app.homeserver -c homeserver.yaml >"$work/synapse.out" 2>&1) &
pids+=($!)
wait_port $matrix_port

bot_password="bot-$RANDOM$RANDOM"
printf '%s\n' "$bot_password" >"$work/matrix-password"
chmod 600 "$work/matrix-password"
"$venv/bin/python" - "$matrix_port" "$secret" "$bot_password" <<'PY'
import hashlib, hmac, json, sys, time, urllib.request
port, secret, bot_password = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}"

def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for _ in range(100):
        try:
            with urllib.request.urlopen(req) as r:
                return json.load(r)
        except urllib.error.URLError as e:
            if getattr(e, "code", None):
                raise SystemExit(f"{method} {path}: {e.code} {e.read().decode()}")
            time.sleep(0.2)
    raise SystemExit(f"{method} {path}: Synapse does not answer")

def register(user, password, admin=False):
    nonce = call("GET", "/_synapse/admin/v1/register")["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0{user}\0{password}\0{'admin' if admin else 'notadmin'}".encode())
    return call("POST", "/_synapse/admin/v1/register", {
        "nonce": nonce, "username": user, "password": password, "admin": admin, "mac": mac.hexdigest()})

register("bridgewarden", bot_password)
alice = register("alice", "alice-password")["access_token"]
register("bob", "bob-password")
# alice creates the rooms: in room version 12 the creator holds all power and must not be
# listed; the bot gets 100 so that it can redact, kick, ban and mute.
power = {"users": {"@bridgewarden:localhost": 100}}
for alias, name in (("lobby", "Lobby (bridged to IRC #lobby)"), ("moderators", "Moderators")):
    call("POST", "/_matrix/client/v3/createRoom", {
        "preset": "public_chat" if alias == "lobby" else "private_chat",
        "room_alias_name": alias, "name": name,
        "invite": ["@bridgewarden:localhost"] + (["@bob:localhost"] if alias == "lobby" else []),
        "power_level_content_override": power}, alice)
PY

echo "building and starting bridgewarden"
cargo build -q
target/debug/bridgewarden config check contrib/bridgewarden.example.toml
target/debug/bridgewarden run --config contrib/bridgewarden.example.toml 2>"$work/bridgewarden.log" &
pids+=($!)
for _ in $(seq 1 300); do
    if "$venv/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:9184/health')" 2>/dev/null; then
        break
    fi
    sleep 0.2
done

cat <<TXT

bridgewarden is running (log: $work/bridgewarden.log).

  IRC     connect any client to 127.0.0.1 port $irc_port (no TLS), then  /join #lobby
          e.g.  irssi -c 127.0.0.1 -p $irc_port -n carol
          Be a moderator: register with NickServ (/msg NickServ REGISTER pass you@example.org)
          and add your account to moderator_accounts, or get +o in the channel.
  Matrix  homeserver http://127.0.0.1:$matrix_port, users alice / alice-password (moderator,
          power 100) and bob / bob-password, e.g. in Element: "Sign in" -> edit homeserver.
          Rooms: #lobby:localhost (bridged to IRC #lobby), #moderators:localhost (escalations).

  Try     "you are an 1d10t" from either side; "!help" as alice; "!policy test some text".
  Ops     curl http://127.0.0.1:9184/metrics ; kill -HUP to reload the policy;
          after stopping: target/debug/bridgewarden audit list --audit-dir $work/data/audit

Ctrl-C stops everything.
TXT
wait "${pids[-1]}"
