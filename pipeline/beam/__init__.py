"""The Beam engine: every DoFn, PTransform and CombineFn, the runner choice, the job.

Each module wraps the stage of the same place in the flow
(`pipeline.stages`); `job` composes them (`MaterializeSequenceFeatures`,
`build`, `run`), `analyze` is the Beam analyze pass. Imported only when the
Beam engine runs (`pipeline.driver`) or `MaterializeSequenceFeatures` is used.
"""

# Namespace of every Beam metric of the job (counters `records_read`,
# `errors_<reason>`, ...).
NAMESPACE = "seqshards"
