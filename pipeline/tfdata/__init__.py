"""The single-machine engine (`--engine tfdata`): the stages on threads, no Beam.

`engine` runs the job, `lengths` is its first pass for `--bucket_boundaries
auto`, `batches` fills batches in place, `threads` overlaps the stages,
`analyze` is the tf.data analyze pass. Never imports `apache_beam`.
"""
