"""Evaluation: from experiment runs to a judged, typed `Summary` (the summary.json format).

    summary     the typed Summary (also the baseline format): to_json / from_json / digest
    runs        the experiment being evaluated and its completed runs (from the ledger)
    evaluators  evaluator adapters (promptflow evaluation flows, Python functions), planned by
                content key and run concurrently through `genaiops.execution.scheduling`
    scoring     metric entries per evaluator run, built-in operational metrics per run
    stats       intervals and paired tests (numpy and closed forms)
    ranking     leaderboard on the primary metric, best variant
    drilldown   per-line view of outputs and scores
    build       all of the above assembled into a Summary
    baseline    where a baseline summary comes from
    gates       absolute and regression gates, verdict

Nothing here imports `genaiops.phases` or `genaiops.reports`: the evaluate phase orchestrates,
reports render a Summary.
"""
