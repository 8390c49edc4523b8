"""The suite's tiers (each test module names exactly one with ``pytestmark``) and its database fixtures:
migrated SQLite files, and a throwaway PostgreSQL server the suite starts and stops."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

#: The tiers, cheapest first: ``make unit`` runs the first, ``make test`` all of them.
TIERS = ("unit", "contract", "service", "grpc", "jax", "e2e", "chaos")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test module declares its tier; a module without one (or with two) is a collection error."""
    seen: dict[str, list[str]] = {}
    for item in items:
        module = item.module.__name__ if item.module is not None else item.nodeid
        if module not in seen:
            marks = getattr(item.module, "pytestmark", [])
            marks = marks if isinstance(marks, list) else [marks]
            seen[module] = [m.name for m in marks if m.name in TIERS]
    bad = {m: tiers for m, tiers in seen.items() if len(tiers) != 1}
    if bad:
        raise pytest.UsageError("every test module needs exactly one tier marker (pytestmark = pytest.mark.X, X in "
                                f"{', '.join(TIERS)}): " + "; ".join(f"{m}: {t or 'none'}" for m, t in sorted(bad.items())))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path:
    """Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin; newest first, then PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name),
                        reverse=True)
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql package")


class PgServer:
    """A PostgreSQL cluster in a temp dir on a loopback port, run as the ``postgres`` user when we are root
    (initdb refuses root). ``restart()`` is for chaos tests; ``database()`` makes a fresh database."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="amoeba-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o755)
        self._names = count()
        self._admin("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.start()

    def _admin(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._as_postgres:
            cmd = (["runuser", "-u", "postgres", "--", *cmd] if shutil.which("runuser")
                   else ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()} {log[-2000:]}")

    def start(self) -> None:
        # fsync off: a throwaway test cluster trades durability for speed.
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._admin("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._admin("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the server on the same port (connections are cut; data is kept)."""
        self.stop(mode)
        self.start()

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def database(self, template: str | None = None) -> str:
        """Create a new database (a copy of ``template`` when given) and return its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""))
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    """A database migrated to head once; test databases are copies of it (CREATE DATABASE ... TEMPLATE)."""
    import db

    url = pg_server.database()
    db.upgrade(url)
    return url.rsplit("/", 1)[1]


@pytest.fixture
def pg_fresh_url(pg_server: PgServer, pg_template: str) -> str:
    """A new PostgreSQL database of its own, at the migration head (about a second to create)."""
    return pg_server.database(template=pg_template)


@pytest.fixture(scope="session")
def _pg_shared(pg_server: PgServer, pg_template: str) -> str:
    return pg_server.database(template=pg_template)


@pytest.fixture
def pg_url(pg_server: PgServer, _pg_shared: str) -> str:
    """An empty PostgreSQL database at the migration head: one shared database, truncated before each test
    (much faster than creating one). Tests must close their stores/engines before they end."""
    import psycopg

    with psycopg.connect(_pg_shared.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute("TRUNCATE experiments, individuals, events, workers RESTART IDENTITY CASCADE")
    return _pg_shared


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import db

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    db.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """A fresh SQLite file at the migration head (a copy of one migrated once per session)."""
    path = tmp_path / "amoeba.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """One URL per backend: the in-memory fake, SQLite and PostgreSQL (the contract suite runs on each)."""
    if request.param == "memory":
        return "memory://"
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[object]:
    import db

    s = db.open_store(store_url)
    try:
        yield s
    finally:
        s.close()
