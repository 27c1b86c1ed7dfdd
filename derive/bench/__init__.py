"""``derive bench``: the generated NumPy step against PyTorch, JAX and the matrix-product floor
(:mod:`.step`), its statement-by-statement profile (:mod:`.profile`) and derivation time against
depth (:mod:`.derivation`)."""
