"""The study database: SQLAlchemy models, the schema version, and engines tuned for concurrent raters.

One database holds one study. SQLite (WAL) is the embedded default; PostgreSQL is the same schema
through a ``postgresql+psycopg://`` URL. Correctness under concurrency rests on unique constraints
(one rating per assignment, one assignment per rater × trial and per rater × position), not on
application locks, so it holds for several app processes against one PostgreSQL server too.
All timestamps are naive UTC.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from metrics.errors import UnavailableError
from metrics.io import redact_url

SCHEMA_VERSION = 2  # 2: loudness per clip, playback events, rater environment, headphone screening
ENV_DB = "MUSICLM_EVAL_RATE_DB"  # the rating app reads its database URL from here
ANSWERS = (2, 1, 0, -1, -2)  # strong A (left), weak A, no preference, weak B, strong B


class StudyDBError(UnavailableError):
    """A database that is missing, not a study database, or of another schema version."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class SchemaInfo(Base):
    __tablename__ = "schema_info"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    seed: Mapped[int] = mapped_column(Integer)
    store_dir: Mapped[str] = mapped_column(Text)
    sample_rate: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    ratings_per_trial: Mapped[int] = mapped_column(Integer)
    trials_per_rater: Mapped[int] = mapped_column(Integer)
    attention_checks: Mapped[int] = mapped_column(Integer)
    completion_code: Mapped[str] = mapped_column(String(64))
    prolific_study_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    admin_secret_hash: Mapped[str] = mapped_column(String(200))
    # None = stored as received; else every stimulus was matched to this BS.1770 integrated loudness
    loudness_target_lufs: Mapped[float | None] = mapped_column(Float, nullable=True)
    true_peak_ceiling_dbtp: Mapped[float | None] = mapped_column(Float, nullable=True)
    # None = plain players, nothing logged; 0 = play events logged, answer not gated; f > 0 = the answer
    # unlocks once both clips were heard to fraction f (events logged)
    playback_min_fraction: Mapped[float | None] = mapped_column(Float, nullable=True)
    headphone_check: Mapped[bool] = mapped_column(Boolean, default=False)
    systems: Mapped[list[System]] = relationship(back_populates="study", order_by="System.position")


class System(Base):
    __tablename__ = "systems"
    __table_args__ = (UniqueConstraint("study_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    name: Mapped[str] = mapped_column(String(200))
    source_dir: Mapped[str] = mapped_column(Text)
    is_reference: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer)
    study: Mapped[Study] = relationship(back_populates="systems")


class Clip(Base):
    """One re-encoded file of the opaque store; ``opaque_id`` is its file stem and says nothing."""

    __tablename__ = "clips"
    __table_args__ = (UniqueConstraint("system_id", "item_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    system_id: Mapped[int] = mapped_column(ForeignKey("systems.id"))
    item_id: Mapped[str] = mapped_column(String(200))
    opaque_id: Mapped[str] = mapped_column(String(64), unique=True)
    source_sha256: Mapped[str] = mapped_column(String(64))
    seconds: Mapped[float] = mapped_column(Float)
    # BS.1770-4 numbers as received and as stored (None when the study does not match loudness)
    source_lufs: Mapped[float | None] = mapped_column(Float, nullable=True)
    source_true_peak_dbtp: Mapped[float | None] = mapped_column(Float, nullable=True)
    gain_db: Mapped[float | None] = mapped_column(Float, nullable=True)
    stored_lufs: Mapped[float | None] = mapped_column(Float, nullable=True)
    stored_true_peak_dbtp: Mapped[float | None] = mapped_column(Float, nullable=True)
    limited: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    system: Mapped[System] = relationship()


class Trial(Base):
    """A caption and two clips. ``clip_a`` belongs to the pair's first system (canonical orientation)."""

    __tablename__ = "trials"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    kind: Mapped[str] = mapped_column(String(16))  # "pair" | "attention"
    item_id: Mapped[str] = mapped_column(String(200))
    caption: Mapped[str] = mapped_column(Text)
    clip_a_id: Mapped[int] = mapped_column(ForeignKey("clips.id"))
    clip_b_id: Mapped[int] = mapped_column(ForeignKey("clips.id"))
    a_on_left: Mapped[bool] = mapped_column(Boolean)
    required: Mapped[int] = mapped_column(Integer)  # ratings wanted (0 for attention checks)
    clip_a: Mapped[Clip] = relationship(foreign_keys=[clip_a_id])
    clip_b: Mapped[Clip] = relationship(foreign_keys=[clip_b_id])


class AttentionCheck(Base):
    """A gold trial: the caption's own clip (``clip_a``) against a clip made for another caption."""

    __tablename__ = "attention_checks"
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"), unique=True)
    correct_clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id"))
    decoy_item_id: Mapped[str] = mapped_column(String(200))
    rule: Mapped[str] = mapped_column(String(64), default="prefer-correct")  # pass = weak or strong for it


class Rater(Base):
    __tablename__ = "raters"
    __table_args__ = (UniqueConstraint("study_id", "prolific_pid"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    prolific_pid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prolific_session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # what the rater's browser reports (first report kept) and what they say they listen on
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    audio_sample_rate: Mapped[int | None] = mapped_column(Integer, nullable=True)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Screening(Base):
    """A rater's headphone check: one row per rater, its answers appended as they come (a reload resumes)."""

    __tablename__ = "screenings"
    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), unique=True)
    test: Mapped[str] = mapped_column(String(64))
    n_trials: Mapped[int] = mapped_column(Integer)
    n_correct: Mapped[int] = mapped_column(Integer)
    passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None until the last trial is answered
    answers: Mapped[str] = mapped_column(Text, default="[]")  # JSON: [[answer, correct], ...] so far
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Assignment(Base):
    """A trial handed to a rater at a position of their sequence, with its own left/right order and salt."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("rater_id", "trial_id"), UniqueConstraint("rater_id", "position"))
    id: Mapped[int] = mapped_column(primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    position: Mapped[int] = mapped_column(Integer)
    a_on_left: Mapped[bool] = mapped_column(Boolean)
    salt: Mapped[int] = mapped_column(Integer)
    assigned_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    trial: Mapped[Trial] = relationship()


class Rating(Base):
    """One answer. ``answer`` is as clicked (+2 = strong preference for the LEFT clip); ``score`` is the
    same preference for the trial's ``clip_a`` (the left/right swap undone), which is what analysis uses."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("rater_id", "trial_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), unique=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    left_clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id"))
    right_clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id"))
    answer: Mapped[int] = mapped_column(Integer)
    score: Mapped[int] = mapped_column(Integer)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    seconds_spent: Mapped[float | None] = mapped_column(Float, nullable=True)


class PlayEvent(Base):
    """One report of a player on a rater's page: ``kind`` is play | pause | ended (or sync: the player's state as
    carried by another player's report, when Streamlit delivered only the latest report); ``fraction`` is the share
    of the clip heard so far (the union of played stretches, so seeking forward does not count) and
    ``plays`` how many times it was started (replays = plays − 1). ``side`` is as shown (A = left)."""

    __tablename__ = "play_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), index=True)
    side: Mapped[str] = mapped_column(String(1))
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id"))
    kind: Mapped[str] = mapped_column(String(16))
    fraction: Mapped[float] = mapped_column(Float)
    plays: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


TABLES = ("schema_info", "studies", "systems", "clips", "trials", "attention_checks", "raters", "assignments", "ratings",
          "play_events", "screenings")


def normalize_url(url: str) -> str:
    """A SQLAlchemy URL; a plain path means a SQLite file (``study.db`` → ``sqlite:///study.db``)."""
    return url if "://" in url else f"sqlite:///{Path(url)}"


def sqlite_path(url: str) -> Path | None:
    u = make_url(normalize_url(url))
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _tune_sqlite(engine: Engine) -> None:
    """WAL + busy timeout, and BEGIN IMMEDIATE for every transaction.

    A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY when another
    writer committed in between (the busy timeout does not apply to that upgrade); taking the write lock
    at BEGIN makes concurrent submissions queue instead. synchronous=NORMAL in WAL survives an app crash.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if make_url(url).drivername.startswith("sqlite"):
        engine = create_engine(url, pool_size=20, max_overflow=60, pool_timeout=120,
                               connect_args={"check_same_thread": False, "timeout": 60})
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_size=10, max_overflow=40, pool_timeout=120, pool_pre_ping=True)


def init_db(url: str) -> Engine:
    """Create the schema in a new (or empty) database; refuse one that already holds tables."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    existing = set(inspect(engine).get_table_names())
    if existing & set(TABLES):
        engine.dispose()
        raise StudyDBError(f"{redact(url)}: database already holds a study (tables {', '.join(sorted(existing & set(TABLES)))}); "
                           "use a new database URL for a new study")
    Base.metadata.create_all(engine)
    with sessionmaker(engine).begin() as s:
        s.add(SchemaInfo(version=SCHEMA_VERSION))
    return engine


def open_db(url: str) -> Engine:
    """An engine on an existing study database of this schema version; a clear error otherwise.

    A missing SQLite file is an error (connecting would silently create an empty database).
    """
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StudyDBError(f"{path}: study database not found (create one with `musiclm-eval rate create`)")
    try:
        engine = make_engine(url)
    except (SQLAlchemyError, ImportError) as e:  # a malformed URL, an unknown or uninstalled driver
        raise StudyDBError(f"{redact(url)}: not a usable database URL ({type(e).__name__}: {e})") from None
    try:
        tables = set(inspect(engine).get_table_names())
        versions = None
        if "schema_info" in tables:
            with engine.connect() as c:
                versions = [r[0] for r in c.execute(select(SchemaInfo.version))]
    except SQLAlchemyError as e:  # not an SQLite file, a server that refuses the connection, …
        engine.dispose()
        detail = str(getattr(e, "orig", None) or e).splitlines()[0]
        raise StudyDBError(f"{redact(url)}: cannot read the study database ({detail})") from None
    if versions is None:
        engine.dispose()
        raise StudyDBError(f"{redact(url)}: not a musiclm-eval study database (no schema_info table)")
    if versions != [SCHEMA_VERSION]:
        engine.dispose()
        raise StudyDBError(f"{redact(url)}: schema version {versions or 'missing'}; this musiclm-eval reads version {SCHEMA_VERSION}")
    missing = set(TABLES) - tables
    if missing:
        engine.dispose()
        raise StudyDBError(f"{redact(url)}: incomplete study database, missing table(s) {', '.join(sorted(missing))}")
    return engine


def sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def the_study(session) -> Study:
    study = session.scalars(select(Study)).first()
    if study is None:
        raise StudyDBError("the database holds no study yet")
    return study


def redact(url: str) -> str:
    return redact_url(normalize_url(url))


# ---- secrets: tokens and the admin secret are stored only as hashes ------------------------------

def new_token() -> str:
    return secrets.token_urlsafe(16)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, 200_000)
    return f"pbkdf2-sha256$200000${salt.hex()}${digest.hex()}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        _algo, _n, salt_hex, _digest = stored.split("$")
    except ValueError:
        return False
    return hmac.compare_digest(hash_secret(secret, bytes.fromhex(salt_hex)), stored)
