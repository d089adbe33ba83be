"""Where a study lives: the storage URLs `legkit tune --storage` takes.

    (none)                         RUNS/tune/optuna.db, an embedded SQLite file in the runs folder
    sqlite:///PATH                 another SQLite file (one machine; several local --jobs are fine)
    postgresql://USER:PW@HOST/DB   any SQLAlchemy URL (postgresql+psycopg2://, mysql+pymysql://...): a database
                                   server that workers on many machines share
    journal:PATH                   Optuna's journal file (an append-only log; works on a shared NFS folder)

Every worker, on any machine, that opens the same storage and study name works on the same study. A database
server that cannot be reached, a SQLite file in a folder that does not exist, or a missing driver is a
one-line LegkitError before anything is written. SQLite waits up to a minute for a lock held by another
worker; database storages record a heartbeat every minute, so that a trial whose worker died (kill -9, power
cut) is marked failed by the next worker after three minutes. A journal file has no heartbeat: such a trial
stays RUNNING.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

from legkit import LegkitError

JOURNAL = "journal:"
DEFAULT_DB = "optuna.db"
HEARTBEAT_S, GRACE_S = 60, 180
"""Database storages: a running trial's heartbeat interval, and the silence after which it counts as failed."""
FORMS = "sqlite:///FILE, postgresql://USER:PASSWORD@HOST:PORT/DB (any SQLAlchemy URL), or journal:FILE"


def default_storage(runs: Path) -> str:
    """The SQLite file of `legkit tune` in the runs folder: RUNS/tune/optuna.db."""
    return f"sqlite:///{(runs / 'tune' / DEFAULT_DB).resolve()}"


def shown(url: str) -> str:
    """`url` with any password hidden, for messages."""
    if url.startswith(JOURNAL):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all: shown as given (it is the user's own text)
        return url


def local_file(url: str) -> Path | None:
    """The file of a SQLite or journal storage (None for a database server or an in-memory SQLite)."""
    if url.startswith(JOURNAL):
        return Path(url[len(JOURNAL):])
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///"):])
    return None


def open_storage(url: str, must_exist: bool = False):
    """The Optuna storage at `url`, connected (tables made for a new database); with `must_exist`, a SQLite or
    journal file that does not exist is an error instead of a new, empty storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # legkit prints its own lines (one per trial)
    file = local_file(url)
    if file is not None:
        if must_exist and not file.is_file():
            raise LegkitError(f"--storage {url}: the file '{file}' does not exist (no study has been run there)")
        if not file.parent.is_dir():
            raise LegkitError(f"cannot open --storage {url}: the folder '{file.parent}' does not exist; "
                              "create it, or give another storage")
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        if not url[len(JOURNAL):]:
            raise LegkitError(f"--storage {url}: name the journal file, e.g. journal:runs/tune/study.log")
        try:
            return JournalStorage(JournalFileBackend(str(file)))
        except OSError as exc:
            raise LegkitError(f"cannot open --storage {url}: {exc.strerror or exc}") from None
    if "://" not in url:
        raise LegkitError(f"--storage {url} is not a storage URL; valid forms: {FORMS}")
    try:
        return _database(url)
    except ImportError as exc:
        missing = getattr(exc.__cause__, "name", None) or exc.name
        raise LegkitError(f"cannot open --storage {shown(url)}: its database driver"
                          f"{f' ({missing})' if missing else ''} is not installed; pip install it (postgresql://: "
                          "psycopg[binary]; mysql+pymysql://: pymysql)") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and its drivers raise their own types
        raise LegkitError(f"cannot open --storage {shown(url)}: {_first_line(exc)}; valid forms: {FORMS}") from None


def _database(url: str, attempts: int = 5):
    """RDBStorage at `url`. Workers that open a new database together race to create Optuna's tables (one of them
    gets a duplicate key or an existing table): the losers try again, finding the tables made."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat: "experimental"
                return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url),
                                                  heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())


def _engine_kwargs(url: str) -> dict:
    """SQLite: wait for other workers' locks; database servers: fail fast when unreachable, check pooled
    connections before use."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "mysql")):
        kwargs["connect_args"] = {"connect_timeout": 10}  # s: an unreachable host fails, it does not hang
    return kwargs


def _first_line(exc: Exception) -> str:
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    text = " ".join(str(cause).split())  # drivers write several lines
    return (f"{type(cause).__name__}: {text}" if text else type(cause).__name__)[:400]
