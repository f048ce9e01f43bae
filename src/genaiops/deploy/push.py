"""Push a local image to a container registry and name it by the digest the registry holds.

Tags are mutable, digests are not: every deployment references `<registry>/<name>@sha256:...`, the
manifest digest docker records for the push (`RepoDigests`). The registry login is the pipeline's
(`az acr login`, `docker login`); without it the push fails with docker's own message.
"""

from __future__ import annotations

from genaiops.deploy import dockercli
from genaiops.errors import GenaiopsError


def remote_repository(registry: str, local_tag: str) -> str:
    """`myacr.azurecr.io` + `genaiops/uc:abc` -> `myacr.azurecr.io/genaiops/uc`."""
    name = local_tag.rsplit(":", 1)[0] if ":" in local_tag.rsplit("/", 1)[-1] else local_tag
    return f"{registry.rstrip('/')}/{name}"


def push_by_digest(local_tag: str, registry: str, progress=None) -> tuple[str, str]:
    """(repository, sha256 digest) of `local_tag` pushed to `registry` under its own tag."""
    progress = progress or (lambda message: None)
    repository = remote_repository(registry, local_tag)
    remote = f"{repository}:{local_tag.rsplit(':', 1)[1]}" if ":" in local_tag else repository
    dockercli.docker("tag", local_tag, remote)
    progress(f"docker push {remote} ...")
    dockercli.docker("push", remote, timeout=3600)
    info = dockercli.inspect("image", remote) or {}
    digests = [d.split("@", 1)[1] for d in info.get("RepoDigests") or [] if d.startswith(repository + "@")]
    if not digests:
        raise GenaiopsError(f"docker pushed {remote} but recorded no digest for {repository}",
                            hint="check the registry; a push by digest is required to deploy")
    return repository, digests[0]
