"""Reading user files at the boundary, with one-line errors."""
