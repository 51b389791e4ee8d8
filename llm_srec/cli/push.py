"""`llm-srec push`: publish a saved model folder (and optionally its SASRec teacher) on the Hugging Face Hub."""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_srec.cli._errors import CLIError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="Push a saved model folder with its model card to the Hugging Face Hub.",
        description="Create the repo if needed, re-render MODEL/README.md for it and upload the model files in "
        "one commit (weights, config with auto_map, modeling sources, processor and tokenizer files, item catalog, "
        "card and its inputs). Anything else in MODEL (data, trainer state, checkpoints) is left out with a warning "
        "naming it, files that look like secrets are never uploaded, and absolute local paths in the uploaded "
        "config.json, training_args.json and card are replaced (MODEL itself is unchanged).",
    )
    parser.add_argument("--model", required=True, type=Path, help="Saved LLM-SRec or SASRec model folder.")
    parser.add_argument("--repo-id", required=True, help="Target repo, OWNER/NAME (or NAME for your namespace).")
    parser.add_argument("--private", action="store_true", help="Create the repo private (no effect if it exists).")
    parser.add_argument("--revision", default=None,
                        help="Branch to commit to (created from the default branch if missing), or refs/pr/N.")
    parser.add_argument("--create-pr", action="store_true",
                        help="Open a pull request against the default branch instead of committing to it.")
    parser.add_argument("--commit-message", default=None, help="Commit message.")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login).")
    parser.add_argument("--endpoint", default=None, help="Hub endpoint URL (default: HF_ENDPOINT or huggingface.co).")
    parser.add_argument("--include-teacher", metavar="REPO_ID", default=None,
                        help="Also push the SASRec teacher to this repo first, with its own card, and link the two "
                        "(--private, --revision and --create-pr apply to both repos).")
    parser.add_argument("--teacher-folder", type=Path, default=None,
                        help="SASRec model folder to push as the teacher (e.g. the pretrain-sasrec output, with "
                        "its own metrics); default: the teacher extracted from MODEL's weights.")
    parser.add_argument("--include-extra", metavar="PATH", action="append", default=[],
                        help="Also upload this file or folder of MODEL (relative to MODEL), e.g. a probe report; "
                        "repeatable. Files that look like secrets are refused.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llm_srec.hub import PublishError, push_model_folder, push_sasrec_teacher

    if args.teacher_folder is not None and args.include_teacher is None:
        raise CLIError("--teacher-folder needs --include-teacher REPO_ID to say where the teacher goes")
    target = dict(private=args.private or None, revision=args.revision, create_pr=args.create_pr,
                  token=args.token, endpoint=args.endpoint)
    try:
        teacher_repo_id = None
        if args.include_teacher is not None:
            teacher = push_sasrec_teacher(args.teacher_folder or args.model, args.include_teacher,
                                          parent_repo_id=args.repo_id, **target)
            teacher_repo_id = teacher.repo_url.repo_id
            print(f"teacher: {teacher.pr_url or teacher.commit_url}")
        commit = push_model_folder(args.model, args.repo_id, commit_message=args.commit_message,
                                   teacher_repo_id=teacher_repo_id, extra_files=args.include_extra, **target)
    except PublishError as error:  # offline, not logged in, refused: one line, like every user error
        raise CLIError(str(error)) from error
    print(commit.pr_url or commit.commit_url)
    return 0
