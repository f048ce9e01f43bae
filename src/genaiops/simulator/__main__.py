"""`python -m genaiops.simulator`: the LLM SIMULATOR on its own, exactly `genaiops simulator`
(same flags, same messages and exit codes)."""

import sys


def main(argv: list[str] | None = None) -> int:
    from genaiops.cli import main as genaiops_main

    return genaiops_main(["simulator", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
