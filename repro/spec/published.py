"""Published numbers as flat records `{paper, table, row, column, value, unit, source}`."""

from __future__ import annotations

from repro.spec.load import PaperDir


def published_records(paper: PaperDir, table: str | None = None) -> list[dict]:
    pub = paper.published
    records = []
    for table_id, t in pub.tables.items():
        if table is not None and table_id != table:
            continue
        notes = {(n.row, n.column): n.note for n in t.notes}
        for row_id, row in t.rows.items():
            for col_id, value in row.values.items():
                rec = {
                    "paper": paper.name, "table": table_id, "row": row_id, "column": col_id,
                    "row_label": row.label, "column_label": t.columns[col_id].label,
                    "value": value, "unit": t.columns[col_id].unit,
                    "source": t.source, "arxiv": f"{pub.arxiv}{pub.version or ''}",
                }
                note = notes.get((row_id, col_id)) or notes.get((row_id, None)) or notes.get((None, col_id))
                if note:
                    rec["note"] = note
                records.append(rec)
    return records
