"""The core of medfusion-bench: what a fusion method or a dataset needs, and nothing else.

``errors`` (user-facing error types), ``options`` (validated frozen options from mappings),
``registry`` (the timm-style name registry), ``contract`` (``SampleTable``, ``DatasetInfo``, the
image-source and oracle protocols), ``batch`` (``Batch``, masked splits), ``tabular`` (train-only
normalisation), ``masks`` (seeded, exact, nested missing-modality masks), ``encoders`` (the shared
timm image encoder and tabular MLP), ``metrics`` (scikit-learn metrics, DeLong).

Layering: ``methods/`` and ``datasets/`` import only this package; this package imports neither,
nor the orchestration in ``benchmark/`` (``tests/test_layers.py`` keeps it so).
"""
