"""`genaiops report comment`: the evaluation's verdict as the sticky comment of a pull request on
GitHub or Azure DevOps, and in the GitHub job summary."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from genaiops.cli.options import OVERLAY, REQUIRED, add_command, add_command_group, project
from genaiops.errors import EXIT_OK, UsageError

PLATFORMS = ("github", "azure_devops")


def add_report_parser(subparsers) -> None:
    commands = add_command_group(subparsers, "report", "Publish an evaluation's verdict",
                                 "Publish the verdict of an evaluation where reviewers look.", ["comment"])
    add_command(commands, "comment", cmd_comment, use_case=REQUIRED, env=OVERLAY,
                values={"--platform": {"choices": PLATFORMS}})


def _summary_path(path: Path) -> Path:
    return path / "summary.json" if path.is_dir() else path


def _latest(workspace, use_case: str) -> Path:
    from genaiops.evaluation.summary import Summary

    folder = workspace.report_dirs(use_case)
    found = []
    for path in folder.glob("*/summary.json"):
        try:
            found.append((Summary.from_json(path.read_text(encoding="utf-8"), str(path)).created_at, path))
        except (OSError, UsageError):
            continue
    if not found:
        raise UsageError(f"no evaluation of {use_case} under {folder}",
                         hint=f"run `genaiops run evaluate -u {use_case}` first, or pass --summary")
    return max(found)[1]


def _read(path: Path):
    from genaiops.evaluation.summary import Summary

    try:
        return Summary.from_json(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", hint="pass the summary.json of an evaluation") from None


def _baseline(summary, given: Path | None):
    """The baseline summary for the changed rows: given, or the evaluation's own if unchanged."""
    if given is not None:
        return _read(_summary_path(given))
    if summary.baseline is None or not summary.baseline.digest:
        return None
    path = _summary_path(Path(summary.baseline.source))
    if not path.is_file():
        return None
    baseline = _read(path)
    return baseline if baseline.digest() == summary.baseline.digest else None


def _run_url(platform: str | None, env) -> str | None:
    if platform == "github" and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        return (f"{env.get('GITHUB_SERVER_URL') or 'https://github.com'}/{env['GITHUB_REPOSITORY']}/actions/"
                f"runs/{env['GITHUB_RUN_ID']}")
    if platform == "azure_devops" and env.get("SYSTEM_COLLECTIONURI") and env.get("BUILD_BUILDID"):
        return (f"{env['SYSTEM_COLLECTIONURI'].rstrip('/')}/{env.get('SYSTEM_TEAMPROJECT', '')}/_build/results"
                f"?buildId={env['BUILD_BUILDID']}&view=artifacts&type=publishedArtifacts")
    return None


def _target(platform: str, pr: int | None, env):
    if platform == "github":
        from genaiops.ci.github import GitHubApi, GitHubPrComments, GitHubRepo, pull_request_number

        number = pr or pull_request_number(env)
        if not number:
            raise UsageError("no pull request to comment on", hint="run it in a pull_request workflow or pass --pr")
        return GitHubPrComments(GitHubApi(GitHubRepo.from_env(env, why="report comment")), number)
    from genaiops.ci.azure_devops import AdoPrThreads, AdoPullRequest

    return AdoPrThreads(AdoPullRequest.from_env(env, pr))


def _register_secrets(root: Path, use_case: str, env_name: str | None) -> None:
    """Everything secret that could reach the comment: the config's keys, `.env`, the environment."""
    from genaiops.config import load_experiment
    from genaiops.config.envvars import load_dotenv_values
    from genaiops.secrets import REDACTOR

    REDACTOR.add(*load_experiment(root, use_case, env_name).secrets())
    REDACTOR.add_env(load_dotenv_values(root))
    REDACTOR.add_env(dict(os.environ))


def cmd_comment(args: argparse.Namespace) -> int:
    """Post or update the pull request's verdict comment.

    Renders the evaluation (the newest, or --summary) as one comment: the leaderboard with
    intervals, each gate and its verdict, the rows whose score changed against the baseline, cost
    and tokens and a link to the full report, behind the hidden marker
    <!-- genaiops:verdict:<use case> -->. With --platform it updates the pull request's comment that
    carries the marker, or creates it (GitHub: issue comments, with GITHUB_TOKEN; Azure DevOps: PR
    threads, with SYSTEM_ACCESSTOKEN); on GitHub it also appends it to $GITHUB_STEP_SUMMARY.
    Secret values are replaced by *** before anything is written or sent.
    """
    from genaiops.ci.comment import upsert
    from genaiops.cli.render import emit_json, out
    from genaiops.reports.comment import marker, render_comment
    from genaiops.secrets import redact

    repo = project(args)
    _register_secrets(repo.root, args.use_case, args.env)
    path = _summary_path(args.summary) if args.summary else _latest(repo.workspace, args.use_case)
    summary = _read(path)
    if summary.use_case != args.use_case:
        raise UsageError(f"{path} is an evaluation of {summary.use_case}, not {args.use_case}")
    env = dict(os.environ)
    body = redact(render_comment(summary, _baseline(summary, args.baseline),
                                 args.report_url or _run_url(args.platform, env)))
    result = {"ok": True, "summary": str(path), "platform": args.platform, "action": "printed"}
    if args.platform == "github" and env.get("GITHUB_STEP_SUMMARY"):
        with open(env["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as handle:
            handle.write(body + "\n")
        result["step_summary"] = env["GITHUB_STEP_SUMMARY"]
    if args.platform:
        result.update(upsert(_target(args.platform, args.pr, env), marker(args.use_case), body))
    if args.json:
        emit_json(result)
    elif args.platform:
        out(f"{result['action']} the {args.platform} PR comment {result['id']} ({marker(args.use_case)})"
            + (f"; duplicates left: {', '.join(result['duplicates'])}" if result["duplicates"] else ""))
    else:
        out(body)
    return EXIT_OK
