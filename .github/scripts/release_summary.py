"""Outputs of the GitHub Build job, from the evidence `genaiops run build` wrote: `digest`,
`reference` and `artifact` in GITHUB_OUTPUT for the deploy jobs, and in the job summary the digest,
the evaluation's verdict and gates, the flow, and what a prod reviewer must do: paste this exact
digest into the review comment (genaiops refuses a prod deploy whose approval comment carries
another digest, or none). Fails when the evidence is missing or invalid: nobody should approve blind.

    python .github/scripts/release_summary.py --evidence evidence/evidence.json --artifact evidence-x-1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evidence", type=Path, required=True)
    parser.add_argument("--artifact", required=True, help="the evidence artifact's name")
    args = parser.parse_args(argv)
    from genaiops.deploy.evidence import Evidence
    from genaiops.errors import GenaiopsError
    from genaiops.secrets import redact

    try:
        evidence = Evidence.read(args.evidence)
    except GenaiopsError as exc:
        print(f"::error::{exc.message}")
        return 1
    digest = evidence.image.digest
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as output:
        output.write(f"digest={digest}\nreference={evidence.image.reference}\nartifact={args.artifact}\n")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(redact(
                f"## Release candidate {evidence.use_case}\n\n"
                f"Image digest: `{digest}`\n\n{evidence.approval_text()}\n\n"
                f"Evidence artifact: `{args.artifact}`\n\n"
                "**Prod reviewers**: approve only if the gates passed and the changes against the deployed "
                "version are acceptable, and paste this digest into the review comment:\n\n"
                f"```\n{digest}\n```\n\nThe deploy refuses an approval whose comment carries another digest "
                "or none, and an approval by the person who triggered the run.\n"))
    print(f"release candidate {evidence.image.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
