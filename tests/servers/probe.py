#!/usr/bin/env python3
"""Raw IRC probe for debugging the test servers (stdlib only, not used by the Rust tests).

Examples:
  probe.py 127.0.0.1:24667 --nick alice --caps "multi-prefix account-tag" \
      --sasl alice:secretpw --send "JOIN #c" --send "WHO #c %tcuhnfar,42" --wait 1
  probe.py 127.0.0.1:24667 --nick bob --send "PRIVMSG NickServ :REGISTER pw bob@example.org"

Prints every line sent (>>) and received (<<) with a timestamp relative to the connect.
--send lines are sent after 001, each followed by --gap seconds of reading.
"""
import argparse
import base64
import socket
import sys
import time

T0 = time.monotonic()


def log(s):
    print(f"[{time.monotonic() - T0:8.3f}] {s}", flush=True)


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def send(self, line):
        log(">> " + line)
        self.sock.sendall(line.encode() + b"\r\n")

    def read_until(self, pred, timeout):
        """Read lines until pred(line, command) is true or timeout; returns the line or None."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                line = raw.rstrip(b"\r").decode("utf-8", "replace")
                log("<< " + line)
                body = line.split(" ", 1)[1] if line.startswith("@") else line
                parts = body.split(" ")
                cmd = parts[1] if body.startswith(":") and len(parts) > 1 else parts[0]
                if cmd == "PING":
                    self.sock.sendall(("PONG " + body.split(" ", 1)[1] + "\r\n").encode())
                if pred(line, cmd):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not data:
                log("-- connection closed by server")
                return None
            self.buf += data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr", help="host:port")
    ap.add_argument("--nick", default="probe")
    ap.add_argument("--caps", default="", help="space separated capabilities to request")
    ap.add_argument("--sasl", default="", help="account:password for SASL PLAIN")
    ap.add_argument("--send", action="append", default=[], help="line to send after 001")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds to read after each --send")
    ap.add_argument("--wait", type=float, default=0.5, help="seconds to read at the end")
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    c = Conn(host, int(port))
    caps = a.caps.split()
    if a.sasl and "sasl" not in caps:
        caps.append("sasl")
    if caps:
        c.send("CAP LS 302")
        c.read_until(lambda l, cmd: cmd == "CAP", 5)
    c.send(f"NICK {a.nick}")
    c.send(f"USER {a.nick} 0 * :{a.nick}")
    if caps:
        c.send("CAP REQ :" + " ".join(caps))
        c.read_until(lambda l, cmd: cmd == "CAP", 5)
        if a.sasl:
            acct, pw = a.sasl.split(":", 1)
            c.send("AUTHENTICATE PLAIN")
            c.read_until(lambda l, cmd: cmd == "AUTHENTICATE", 5)
            c.send("AUTHENTICATE " + base64.b64encode(f"{acct}\0{acct}\0{pw}".encode()).decode())
            c.read_until(lambda l, cmd: cmd in ("903", "904", "905", "906", "908"), 10)
        c.send("CAP END")
    t = time.monotonic()
    if c.read_until(lambda l, cmd: cmd == "001", 15) is None:
        sys.exit("no 001")
    log(f"-- registered in {time.monotonic() - t:.3f}s")
    c.read_until(lambda l, cmd: False, 0.2)
    for line in a.send:
        c.send(line)
        c.read_until(lambda l, cmd: False, a.gap)
    c.read_until(lambda l, cmd: False, a.wait)
    c.send("QUIT :probe done")
    c.read_until(lambda l, cmd: False, 0.5)


if __name__ == "__main__":
    main()
