"""derive's renderers: a derivation printed as a LaTeX sheet (:func:`sheet.to_latex`) and as a
verified NumPy module (:func:`module.to_numpy`), through SymPy printer subclasses. Renderers read
what a :class:`~derive.core.derivation.Derivation` publishes; they never differentiate."""
