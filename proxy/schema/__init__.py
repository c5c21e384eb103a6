"""Versioned collection schemas (``switchyard schema ...``): revision files, the operations API,
a pure planner of the exact Qdrant calls, tracking in the state store, and the executor that
applies revisions online. See docs/schema.md."""
