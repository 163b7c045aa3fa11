"""Everything that talks to MLflow: the store (``store``), a run's record (``recorder``, with its
``plots``), the logged network (``model``, ``pyfunc_network``), the Model Registry
(``model_registry``) and the store-wide queries sweeps and reports share (``runs``)."""
