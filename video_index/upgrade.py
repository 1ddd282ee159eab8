"""Convert an index of the old layout (Parquet run files per table) into the tables.

``upgrade(output)`` writes the rows that stand under the old rule (``video_index.query``'s
views over the files: per ``(video_id, uri)`` the newest run, that run's clips, once)
into ``OUTPUT/<table>.lance`` (``video_index.table``), streamed in batches, one table at
a time; the Parquet files are left where they are. ``upgrade_if_old`` is what a run,
``compact`` and ``video-index upgrade`` call on an index they meet.
"""

from __future__ import annotations

from typing import Optional

import lance
import pyarrow as pa
import pyarrow.parquet as pq

from video_index.index import index_files
from video_index.query import connect_files
from video_index.storage import filesystem, lance_options
from video_index.table import SPECS, conform_rows, has_tables, open_table, table_uri

__all__ = ["upgrade", "upgrade_if_old"]


def upgrade(output: str, *, memory_limit: str = "2GB") -> dict[str, int]:
    """Convert the Parquet layout at ``output`` into Lance tables; returns rows per table.

    Writes the rows that stand now (``video_index.query``'s ``videos``, ``clips`` and
    ``failures`` views: per ``(video_id, uri)`` the newest run, that run's clips, once)
    into ``OUTPUT/<table>.lance``, streamed in batches, one table at a time. The Parquet
    files are left where they are. Raises FileExistsError if a table is already there.
    """
    for table in SPECS:
        if open_table(output, table) is not None:
            raise FileExistsError(f"{table_uri(output, table)} exists: already upgraded")
    fs, _ = filesystem(output)
    con = connect_files(fs, index_files(output), memory_limit=memory_limit)
    written = {}
    for table, spec in SPECS.items():
        # DuckDB reads a fixed-size float16 embedding back as a float list: the optional
        # columns keep the type the run files wrote (read from their footers).
        optional = {}
        for path in index_files(output)[table]:
            for field in pq.read_schema(path, filesystem=fs):
                if spec.schema.get_field_index(field.name) < 0:
                    optional.setdefault(field.name, field.type)
        reader = con.sql(f"SELECT * FROM {table}").to_arrow_reader(100_000)
        schema = conform_rows(reader.schema.empty_table(), spec, optional).schema
        batches = (conform_rows(pa.Table.from_batches([b]), spec, optional) for b in reader)
        source = pa.RecordBatchReader.from_batches(
            schema, (batch for table_ in batches for batch in table_.to_batches())
        )
        uri = table_uri(output, table)
        dataset = lance.write_dataset(
            source, uri, schema=schema, storage_options=lance_options(uri)
        )
        written[table] = dataset.count_rows()
    con.close()
    return written


def upgrade_if_old(output: str, *, memory_limit: str = "2GB") -> Optional[dict[str, int]]:
    """``upgrade(output)`` where ``output`` holds the Parquet layout and no Lance table
    yet (a run's first meeting with an old index); None where there is nothing to do."""
    if has_tables(output):
        return None
    try:
        files = index_files(output)
    except FileNotFoundError:
        return None
    if not any(files.values()):
        return None
    return upgrade(output, memory_limit=memory_limit)
