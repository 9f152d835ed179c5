"""Table specs: load + validate (schema), expand to cells, cell identity."""

from repro.spec.cells import Cell, expand_cells
from repro.spec.load import PaperDir, list_papers, load_table, resolve_table

__all__ = ["Cell", "expand_cells", "PaperDir", "list_papers", "load_table", "resolve_table"]
