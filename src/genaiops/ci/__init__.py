"""The CI platforms genaiops talks to from inside a pipeline run: GitHub (`github`, the REST API
with the run's GITHUB_TOKEN) and Azure DevOps pull requests (`azure_devops`), and the sticky PR
comment that carries an evaluation's verdict on both (`comment`). Approval checks, which decide a
deploy, live in `deploy/` (`deploy/github.py`, `deploy/ado.py`) and use these clients."""
