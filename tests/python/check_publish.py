"""Opens every table of an `opslake publish` snapshot with pyarrow and with DuckDB and checks
that both see the row counts manifest.json records. Run by the Rust test
`publish_writes_a_switched_snapshot_with_the_lake_row_counts` with the venv scripts/test makes."""

import json
import pathlib
import sys

import duckdb
import pyarrow.parquet as pq


def main(out_dir: str) -> int:
    root = pathlib.Path(out_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    problems = []
    con = duckdb.connect()
    for table in manifest["tables"]:
        path = root / table["path"]
        via_arrow = pq.read_table(path).num_rows
        via_duckdb = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
        # BI tools point at current/: it must show the same files.
        via_current = pq.ParquetFile(root / "current" / pathlib.Path(table["path"]).relative_to(
            pathlib.Path("snapshots") / manifest["snapshot_id"])).metadata.num_rows
        if not table["rows"] == via_arrow == via_duckdb == via_current:
            problems.append(f"{table['table']}: manifest {table['rows']}, pyarrow {via_arrow}, "
                            f"duckdb {via_duckdb}, current/ {via_current}")
    if problems:
        print("\n".join(problems))
        return 1
    print(f"{len(manifest['tables'])} tables: pyarrow and duckdb agree with manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
