"""Loopback stand-ins for the services the pipeline talks to and this machine cannot reach:
Azure ML (`azureml`), Azure Blob Storage behind a CONNECT proxy (`blob`, `proxy`), a container
registry (`registry`), Azure DevOps (`ado`), GitHub's REST API (`github`) and the `az` CLI (`bin/az`). Each speaks the service's
wire protocol as the real clients use it (the real SDKs, docker, httpx), so what they assert is what
the clients sent. `http` holds the shared server plumbing, `tls` the test certificate authority."""
