"""Render REPORT.md and report.json from the results store and the table specs."""
