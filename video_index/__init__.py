"""The index that users read: its tables, their schemas and storage, and the queries over them.

Beam-free, and below the job in the import graph: ``transforms`` (the stages, whose
sink writes these tables) and ``beam_pipeline`` (the commands) import it; it imports
neither. ``schemas`` (one pyarrow schema per table), ``storage`` (fsspec access with
retries), ``index`` (which files hold a table, the rows that stand), ``query`` (DuckDB
views over the standing rows), ``segments`` (events merged from clips), ``compact``
(compaction), ``nearest`` (nearest clips by embedding), ``class_match`` with
``text_encoder`` (the classes a search in the user's words means) and ``table`` (the
tables as Lance datasets: idempotent commits, snapshots, ``upgrade`` from the Parquet
layout).
"""
