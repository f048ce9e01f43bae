"""What runs inside the Agent Framework engine's own Python environment (and its serving image).

genaiops' orchestrator cannot import agent-framework (its opentelemetry-api>=1.39 conflicts with
promptflow 1.18's <1.39), so this package is the engine's other half: it needs only the standard
library and the packages in `../requirements.txt`, never `genaiops` itself.

    llm      chat clients for the use case's connections (retries, usage counting)
    app      load `app.py:build`, run one input through the agent or workflow it returns
    batch    `python -m genaiops_af_runtime.batch JOB RESULT`: a dataset, lines concurrently
    serve    `python -m genaiops_af_runtime.serve`: the serving image's ASGI app (/score, /health)
"""
