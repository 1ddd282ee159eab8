"""The index that users read: its tables, their schemas and storage, and the queries over them.

Beam-free, and below the job in the import graph: ``transforms`` (the stages, whose
sink writes these tables) and ``beam_pipeline`` (the commands) import it; it imports
neither. ``schemas`` (one pyarrow schema per table), ``storage`` (fsspec access with
retries), ``table`` (the tables as Lance datasets: idempotent commits, the standing rule at a
run's end, snapshots, compaction, repair), ``index`` (the rows that stand),
``query`` (DuckDB views over one snapshot), ``segments`` (events merged from clips),
``nearest`` (nearest clips by embedding), ``upgrade`` (an index of the old Parquet
layout into the tables), ``class_match`` with ``text_encoder`` (the classes a search in
the user's words means).
"""
