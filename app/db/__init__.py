"""Database: declarative models, the engine and session factory, the embedded PostgreSQL."""
