"""The Numba twin of the NumPy reference: template loops (``templates``), the code generation
and disk cache that compile them per (activation, rule) pair (``codegen``), and an ``exp`` that
LLVM can vectorize, with the sigmoid written with it (``fastexp``)."""
