"""Demo client nodes (perception, planner) and the composed demo run."""
