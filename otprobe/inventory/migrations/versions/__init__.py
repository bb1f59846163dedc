"""One file per schema revision, applied in order; a revision is never edited once released."""
