"""derive's checker for hand derivations: a formula (text or SymPy) read into a small tree, given a
meaning by evaluation backends, compared with the derived gradient and diagnosed. It reads the
derivation through the core's public API and never differentiates."""
