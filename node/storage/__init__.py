"""The node's database: SQLAlchemy 2 ORM over SQLite (embedded) or PostgreSQL (production)."""
