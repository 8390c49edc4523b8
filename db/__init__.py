"""The SQL population store: SQLAlchemy rows, repositories and Alembic migrations."""
