"""Engine-neutral stages: pure code both engines share.

read (`tfrecord`) -> `decode` -> `validate` -> `bucket` -> `features` ->
`batch_format` -> `output` -> `metadata`; beside them the job's `config`, the
columns `spec`, the `analysis` accumulators, `blocks` and `progress`. Nothing
here imports `apache_beam` or an engine (tests/pipeline/test_layers.py).
"""
