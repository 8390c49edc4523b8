"""SQLAlchemy 2 rows of the population store; the schema itself is owned by the Alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BIGINT on PostgreSQL but INTEGER on SQLite, where only "INTEGER PRIMARY KEY" aliases the rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class ExperimentRow(Base):
    """One experiment: its validated config (JSON), seed, state and the counters the hot path updates."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config_json: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    proposals: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    # The last event sequence number; the next event gets event_seq + 1 (the row lock serializes it).
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    best_individual_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    best_fitness: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The circuit breaker: failures and rejections since the last completion, the latest one's reason, and
    # why the experiment is paused (revision 0002).
    paused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Children the early-stopping rule stopped (revision 0003).
    stopped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ranked: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completed_train_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    stopped_train_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class IndividualRow(Base):
    """One proposal: genome, lineage, lease and outcome with typed metric columns."""

    __tablename__ = "individuals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    proposal_seq: Mapped[int] = mapped_column(Integer)
    genome_json: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(32))
    parent_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mutation: Mapped[str] = mapped_column(String(200), default="")
    training_seed: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_deadline: Mapped[float | None] = mapped_column(Float, nullable=True)
    fitness: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mult_adds: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    train_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    compile_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    fits_on_chip: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    completion_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    in_population: Mapped[bool] = mapped_column(Boolean, default=False)
    # True when this completion raised the experiment's best fitness: best-so-far without a history scan.
    improved: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    leased_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The last progress report kept (revision 0003): what `amoeba status` shows of a child in training.
    epochs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The trained weights in the artifact store (revision 0004): the database keeps where and a checksum.
    artifact_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    artifact_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    artifact_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Weight inheritance (revision 0005): parameters taken from the parent, accuracy before training.
    inherited_params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    initial_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)

    # Partial indexes hold only the rows a hot query wants, so most writes touch few index pages
    # (every page a commit dirties is appended to SQLite's WAL). Queries repeat each index's predicate
    # literally: SQLite only uses a partial index when the query's WHERE implies it textually.
    __table_args__ = (
        UniqueConstraint("experiment_id", "proposal_seq", name="uq_individuals_experiment_seq"),
        # the claim of requeued work, oldest proposal first
        Index("ix_individuals_queued", "experiment_id", "proposal_seq",
              sqlite_where=text("state = 'queued'"), postgresql_where=text("state = 'queued'")),
        # the expiry sweep: leased rows by deadline
        Index("ix_individuals_leased", "experiment_id", "lease_deadline",
              sqlite_where=text("state = 'leased'"), postgresql_where=text("state = 'leased'")),
        Index("ix_individuals_population", "experiment_id", "completion_rank",
              sqlite_where=text("in_population = 1"), postgresql_where=text("in_population")),
        Index("ix_individuals_rank", "experiment_id", "completion_rank", unique=True,
              sqlite_where=text("completion_rank IS NOT NULL"), postgresql_where=text("completion_rank IS NOT NULL")),
        Index("ix_individuals_fitness", "experiment_id", "fitness",
              sqlite_where=text("fitness IS NOT NULL"), postgresql_where=text("fitness IS NOT NULL")),
        Index("ix_individuals_improved", "experiment_id", "completion_rank",
              sqlite_where=text("improved = 1"), postgresql_where=text("improved")),
        # retention's read after each report with weights: the artifacts still kept
        Index("ix_individuals_artifacts", "experiment_id", "proposal_seq",
              sqlite_where=text("artifact_state = 'kept'"), postgresql_where=text("artifact_state = 'kept'")),
    )


class EventRow(Base):
    """The append-only event log; ``seq`` is dense and increasing per experiment."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[float] = mapped_column(Float)
    individual_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    proposal_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data_json: Mapped[str] = mapped_column(Text, default="{}")

    __table_args__ = (UniqueConstraint("experiment_id", "seq", name="uq_events_experiment_seq"),)


class WorkerRow(Base):
    """A worker as last seen: host, the experiment and individual it works on, evaluations completed."""

    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    evaluator: Mapped[str] = mapped_column(String(64), default="")
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    experiment_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    current_individual_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    evaluations: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_workers_experiment", "experiment_id"),)
