"""The application around the core: the config schema (``schema``), one run end to end
(``run``) and the ``slnn-train`` command line (``cli``)."""
