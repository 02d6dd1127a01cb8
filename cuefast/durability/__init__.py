"""PostgreSQL: the schema, snapshots of changed state, restore after data loss, history."""
