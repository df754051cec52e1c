"""MFCLIP model parts: backbone, FLE, MVE (global + noise), SPA, heads, losses."""
