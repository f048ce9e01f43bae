"""`python -m genaiops.simulator`: the LLM SIMULATOR on its own, same flags as `genaiops simulator`."""

import argparse
import sys

from genaiops.cli.simulator import add_arguments, run_from_args
from genaiops.errors import GenaiopsError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genaiops.simulator",
        description="Loopback OpenAI-compatible LLM SIMULATOR (not a real model).",
    )
    add_arguments(parser)
    try:
        return run_from_args(parser.parse_args(argv))
    except GenaiopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
