"""Imported at start-up by every Python process of a genaiops promptflow run (the runner puts
this folder on PYTHONPATH): applies genaiops' LLM retry policy in promptflow's line workers."""

try:
    from genaiops.engines.promptflow.retry_policy import install_from_env

    install_from_env()
except Exception:  # never break a process over an optional policy
    pass
