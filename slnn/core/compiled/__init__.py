"""The Numba twin of the NumPy reference: template loops (``templates``) and the code generation
and disk cache that compile them per (activation, rule) pair (``codegen``)."""
