"""The run journal (SQLite): the one front door to everything a run keeps, its records, and
its ordered migrations. No SQL lives outside this package."""
