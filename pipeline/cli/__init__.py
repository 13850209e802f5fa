"""The command line: `seqshards` (`main`), `seqshards stats`, `seqshards inspect`.

`flags` holds the flags shared by the job and `stats`; `plots` draws their
figures. The CLI calls the driver (`pipeline.driver`), never an engine.
"""
