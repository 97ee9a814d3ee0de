"""Alembic environment: migrations run as the owner role (see flasktrack/db.py)."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from core.db import sqlalchemy_url

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
if not url:
    from core.config import get_settings
    from core.db import owner_url

    url = owner_url(get_settings())

engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
with engine.connect() as connection:
    # Migrations of several processes starting at once (make run, CI) must not interleave.
    connection.execute(text("SELECT pg_advisory_lock(7246001)"))
    context.configure(
        connection=connection,
        target_metadata=None,
        transaction_per_migration=True,
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(7246001)"))
        connection.commit()
engine.dispose()
