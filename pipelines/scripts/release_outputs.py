"""Outputs of the Build job for later stages, from the evidence `genaiops run build` wrote:
`digest` and `reference` of the image, `artifact` (the evidence artifact's name, unique per job
attempt) and `text`: one line for the approver with the digest, the evaluation's verdict and gates,
the flow and a link to the run's artifacts. Output variables are single-line and cannot carry
logging commands (`##`): the text is flattened and neutralised. Fails when the evidence is missing
or invalid: nobody should approve blind.

    python pipelines/scripts/release_outputs.py --evidence evidence/evidence.json --artifact evidence-x-1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ado_rest import log_issue, set_variable

MAX_CHARS = 3000


def report_link(artifact: str) -> str:
    collection = os.environ.get("SYSTEM_COLLECTIONURI", "")
    project = os.environ.get("SYSTEM_TEAMPROJECT", "")
    build = os.environ.get("BUILD_BUILDID", "")
    if not (collection and project and build):
        return f"artifact {artifact}"
    return (f"{collection.rstrip('/')}/{project}/_build/results?buildId={build}"
            f"&view=artifacts&type=publishedArtifacts (artifact {artifact})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evidence", type=Path, required=True, help="evidence.json of `genaiops run build`")
    parser.add_argument("--artifact", required=True, help="name the evidence artifact is published under")
    args = parser.parse_args(argv)
    from genaiops.deploy.evidence import Evidence
    from genaiops.errors import GenaiopsError

    try:
        evidence = Evidence.read(args.evidence)
    except GenaiopsError as exc:
        log_issue("error", exc.message)
        return 1
    text = f"{evidence.approval_text()} Evidence: {report_link(args.artifact)}"
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1] + "…"
    set_variable("digest", evidence.image.digest, output=True)
    set_variable("reference", evidence.image.reference, output=True)
    set_variable("artifact", args.artifact, output=True)
    set_variable("text", text, output=True)
    print(f"release candidate {evidence.image.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
