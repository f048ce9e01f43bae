"""Closing the loop after deploy: traces of the deployed images, where they are kept and read.

    otlp      OTLP trace requests (protobuf, JSON) -> spans
    receiver  the embedded loopback OTLP/HTTP receiver (`POST /v1/traces`)
    store     the embedded SQLite trace store (`Workspace.traces_db`)
    reader    the `TraceReader` protocol: the embedded store or Application Insights
"""
