#!/usr/bin/env python3
"""README.md's shell sessions, run against a fresh server, their answers
compared with the README's by shape.

Every ```console block is a session in one bash (variables carry from block
to block): each `$ ` line is run, and the lines under it are what it must
print. Each ```sh block is run as it is (a file the session needs); shell
lines that are not part of the session are fenced ```shell. The answers are compared line by
line, ignoring what changes from run to run: UUIDs (whole or cut short with
`…`), RFC 3339 times, JWTs. `…` in a line stands for anything; a line that
is only `…` for any lines. An indented line under one that ends with a comma
continues it (the README wraps long JSON). Blank lines, and bash's own job notices (`[1]
3589`, `Terminated`), do not count.

The server and the projector run as ./Run.sh runs them (the dev profile),
on free ports, with a private redis-server and a new PostgreSQL database,
all removed at the end. `localhost:8080` in the README means that server;
`/tmp/` a private folder; `.run/env` is written as ./Run.sh writes it.

Usage (scripts/test-readme.sh sets it up): check.py --bin DIR
[--readme README.md] [--postgres ADMIN_URL]. Exits 1 on the first
difference, showing the session's expected and actual lines.
"""
import argparse
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"
JWT = r"eyJ[\w-]*\.[\w-]+\.[\w-]+"
# Lines bash prints about its own background jobs.
JOB_NOTICE = re.compile(r"^\[\d+\][+-]?\s+\d+$|^(?:\S+: line \d+: +)?\d+ Terminated\b|^\[\d+\][+-]?\s+Terminated\b")
# Commands that only read: retried while the projector catches up, or while
# the server has not yet seen that a follower from the step before has left.
READS = re.compile(r"^(psql|streamboard tail|curl -s \"?localhost|printf .*\| timeout \d+ websocat)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Block:
    def __init__(self, kind, lines, line_no):
        self.kind, self.lines, self.line_no = kind, lines, line_no

    def steps(self):
        """(command, expected lines) of a console block."""
        steps = []
        for line in self.lines:
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                if line.startswith((" ", "\t")) and steps[-1][1] and steps[-1][1][-1].endswith(","):
                    steps[-1][1][-1] += line.strip()  # wrapped JSON
                elif line.strip():
                    steps[-1][1].append(line.rstrip())
        return steps


def blocks(readme):
    found, kind, lines, start = [], None, [], 0
    for no, line in enumerate(readme.splitlines(), 1):
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence and kind is None:
            kind, lines, start, indent = fence.group(1), [], no, len(line) - len(line.lstrip())
        elif fence and kind is not None:
            if kind in ("console", "sh"):
                found.append(Block(kind, lines, start))
            kind = None
        elif kind is not None:
            lines.append(line[indent:] if line[:indent].strip() == "" else line)
    return found


def normalize(line):
    line = re.sub(UUID, "<uuid>", line)
    line = re.sub(TIME, "<time>", line)
    return re.sub(JWT, "<token>", line).rstrip()


def pattern(expected):
    """The README's line as a regex over a normalized line."""
    line = re.sub(UUID, "<uuid>", expected)
    line = re.sub(r"[0-9a-f]{8}(?:-[0-9a-f]{1,4}){0,3}-?…", "<uuid>", line)  # an id cut short
    line = re.sub(TIME, "<time>", line)
    line = re.sub(r"eyJ[\w-]*\.…", "<token>", line)
    return re.compile(".*".join(re.escape(part) for part in line.rstrip().split("…")))


def matches(expected, actual):
    """Whether the actual lines fit the expected ones; `…` alone skips lines."""
    actual = [normalize(a) for a in actual if a.strip() and not JOB_NOTICE.search(a.strip())]
    positions = {(0, 0)}
    for e in expected:
        following = set()
        for (i, j) in positions:
            if e.strip() == "…":
                following.update((i + 1, k) for k in range(j, len(actual) + 1))
            elif JOB_NOTICE.search(e.strip()):
                following.add((i + 1, j))
            elif j < len(actual) and pattern(e).fullmatch(actual[j]):
                following.add((i + 1, j + 1))
        positions = following
    return any(j == len(actual) for (_, j) in positions)


class Shell:
    """One bash, commands fed one at a time, output read up to a marker."""

    def __init__(self, cwd, env):
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.count, self.pending = 0, b""
        self.run("exec 2>&1")

    def run(self, command, timeout=30.0, settle=0.0):
        self.count += 1
        marker = f"@@done {self.count}@@"
        # On a line of its own: an answer need not end with a newline.
        self.proc.stdin.write(f"{command}\nprintf '\\n%s\\n' '{marker}'\n")
        self.proc.stdin.flush()
        lines, deadline = [], time.monotonic() + timeout
        while True:
            line = self.read_line(deadline - time.monotonic())
            if line is None:
                raise TimeoutError(f"no end of: {command}\n" + "\n".join(lines))
            if line.rstrip("\n") == marker:
                break
            lines.append(line.rstrip("\n"))
        # A background job may still be printing: gather until it is quiet.
        while settle:
            line = self.read_line(settle)
            if line is None:
                break
            lines.append(line.rstrip("\n"))
        return lines

    def read_line(self, timeout):
        """The next line, or None after `timeout` seconds without one (read
        straight from the pipe: a buffered reader would hide lines from select)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(self.proc.stdout.fileno(), 65536) if ready else b""
            if not chunk:
                return None
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode("utf-8", "replace")

    def close(self):
        self.proc.kill()
        self.proc.wait()


class Services:
    """A private redis-server, a new database, the server and the projector."""

    def __init__(self, bin_dir, admin_url, work, config_dir):
        self.procs, self.admin_url, self.db = [], admin_url, f"sb_readme_{secrets.token_hex(6)}"
        redis_port, self.port = free_port(), free_port()
        self.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work])
        self.wait(lambda: subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True, text=True).stdout.startswith("PONG"), "redis-server")
        self.psql(f'CREATE DATABASE "{self.db}"')
        self.env = {
            "STREAMBOARD_ENV": "dev",
            "STREAMBOARD_CONFIG_DIR": config_dir,
            "STREAMBOARD__SERVER__ADDR": f"127.0.0.1:{self.port}",
            "STREAMBOARD__REDIS__URL": f"redis://127.0.0.1:{redis_port}",
            "STREAMBOARD__POSTGRES__URL": f"{admin_url.rsplit('/', 1)[0]}/{self.db}",
            "STREAMBOARD__AUTH__JWT_SECRET": secrets.token_hex(32),
            "STREAMBOARD__PROJECTOR__METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "RUST_LOG": "warn",
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMBOARD")} | self.env
        server = self.start([os.path.join(bin_dir, "streamboard")], env=env, cwd=work, log=os.path.join(work, "server.log"))
        self.start([os.path.join(bin_dir, "projector")], env=env, cwd=work, log=os.path.join(work, "projector.log"))
        self.wait(lambda: "listening on" in open(os.path.join(work, "server.log")).read() or server.poll() is not None, "the server")
        if server.poll() is not None:
            raise RuntimeError("the server exited:\n" + open(os.path.join(work, "server.log")).read())

    def start(self, argv, env=None, cwd=None, log=None):
        out = open(log, "w") if log else subprocess.DEVNULL
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def psql(self, sql):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql, self.admin_url], check=True, capture_output=True)

    @staticmethod
    def wait(check, what, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}")

    def stop(self):
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--bin", required=True, help="folder with the streamboard and projector binaries")
    parser.add_argument("--readme", default=os.path.join(root, "README.md"))
    parser.add_argument("--postgres", default=os.environ.get("STREAMBOARD_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="sb-readme-")
    services = shell = None
    try:
        services = Services(os.path.abspath(args.bin), args.postgres, work, os.path.join(root, "config"))
        os.makedirs(os.path.join(work, ".run"))
        with open(os.path.join(work, ".run", "env"), "w") as env_file:  # as ./Run.sh writes it
            for name, value in sorted(services.env.items()):
                if name.startswith("STREAMBOARD"):
                    env_file.write(f"export {name}='{value}'\n")
            env_file.write(f"export STREAMBOARD_CONFIG_DIR='{os.path.join(root, 'config')}'\n")
            env_file.write(f"export PATH='{os.path.abspath(args.bin)}':\"$PATH\"\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMBOARD")}
        shell = Shell(work, env)
        local = f"localhost:{services.port}"
        checked = 0
        for block in blocks(open(args.readme).read()):
            text = "\n".join(block.lines).replace("localhost:8080", local).replace("/tmp/", f"{work}/")
            if block.kind == "sh":
                shell.run(text)
                continue
            background = False
            for command, expected in block.steps():
                command = command.replace("localhost:8080", local).replace("/tmp/", f"{work}/")
                background = (background or command.rstrip().endswith("&")) and not command.startswith("kill %")
                for attempt in range(20):
                    actual = [a.replace(local, "localhost:8080").replace(work, "/tmp") for a in shell.run(command, settle=0.7 if background else 0.0)]
                    if matches(expected, actual) or not READS.match(command) or attempt == 19:
                        break
                    time.sleep(0.5)  # the projector may not have caught up yet
                if not matches(expected, actual):
                    print(f"README.md:{block.line_no}: the answer to\n  $ {command}\ndoes not have the README's shape.\n"
                          "--- README\n" + "\n".join(expected) + "\n--- actual\n" + "\n".join(actual), file=sys.stderr)
                    return 1
                checked += 1
        print(f"README.md: {checked} commands answered as the README shows")
        return 0
    finally:
        if shell:
            shell.close()
        if services:
            services.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
