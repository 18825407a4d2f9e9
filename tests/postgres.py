"""A throw-away PostgreSQL server for the tests: ``initdb`` in a temporary folder, a free port on
localhost, password authentication (scram-sha-256, a random password made for the server and
given only in the URL: no local user is trusted), stopped and deleted afterwards. PostgreSQL refuses to run as
root, so where the tests run as root the server runs as the ``postgres`` user (Debian's package
creates it), through ``runuser``."""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator, List


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise PostgresUnavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                                  "scripts/ensure-postgresql.sh installs Debian's package")
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_server(database: str = "tune") -> Iterator[str]:
    """Yields a SQLAlchemy URL of an empty database on a fresh server."""
    bin_dir = _bin_dir()
    as_user: List[str] = []
    folder = tempfile.mkdtemp(prefix="bnbench-postgres-")      # under /tmp: reachable by the server's user
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = os.path.join(folder, "data"), os.path.join(folder, "server.log")
    port = _free_port()
    password = secrets.token_hex(16)
    password_file = os.path.join(folder, "password")
    with open(os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(password + "\n")
    if as_user:
        os.chown(password_file, user.pw_uid, user.pw_gid)

    def run(*command: str, env=None) -> None:
        done = subprocess.run(as_user + list(command), capture_output=True, text=True, timeout=120, cwd=folder, env=env)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise PostgresUnavailable(f"{os.path.basename(command[0])} failed: {' / '.join(tail)}")

    try:
        run(f"{bin_dir}/initdb", "-D", data, "-U", "bnbench", "--auth=scram-sha-256", f"--pwfile={password_file}",
            "-E", "UTF8", "--no-sync")
        os.unlink(password_file)
        run(f"{bin_dir}/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start",
            "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100")
        run(f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "bnbench", database,
            env=dict(os.environ, PGPASSWORD=password))
        yield f"postgresql+psycopg2://bnbench:{password}@127.0.0.1:{port}/{database}"
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run(as_user + [f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, cwd=folder)
        for _ in range(20):
            try:
                shutil.rmtree(folder)
                break
            except OSError:
                time.sleep(0.1)
