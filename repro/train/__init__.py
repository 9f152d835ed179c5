"""Run one cell: build its model and data, train with Lightning, checkpoint, write the result."""
