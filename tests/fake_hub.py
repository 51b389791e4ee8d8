"""A fake Hugging Face Hub on 127.0.0.1 for publishing tests, and a model-folder builder.

`FakeHub` answers the HTTP calls that `huggingface_hub` makes for `create_repo`, `create_branch`, `create_commit`
and `upload_folder`: repo creation, README metadata validation, preupload, pull-request creation (the xet upload
pipeline opens PRs explicitly), the LFS batch API with the basic transfer (PUT + verify), the NDJSON commit, and
the agent-harness registry that `huggingface_hub` fetches once a day for its user-agent header (served empty).
It keeps every repo's files per revision and records every request, commit and LFS object, so tests can assert
exactly what was received. With `token` set, Hub API calls without that bearer token are answered 401, as the
Hub answers a missing or revoked token. Files matching `lfs_patterns` are answered upload mode "lfs"; the xet
protocol is not emulated, so use LFS patterns only with xet disabled (`huggingface_hub.constants.HF_HUB_DISABLE_XET`).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

USER = "test-user"
_REPO_ROUTE = re.compile(r"/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)")
_DISCUSSIONS_ROUTE = re.compile(r"/api/models/([^/]+/[^/]+)/discussions(?:/(\d+))?")
_LFS_BATCH_ROUTE = re.compile(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch")
_LFS_UPLOAD_ROUTE = re.compile(r"/_lfs/upload/([0-9a-f]{64})")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class Commit:
    repo_id: str
    revision: str
    summary: str
    files: dict[str, bytes]
    lfs_paths: list[str]
    oid: str


@dataclass
class Repo:
    repo_id: str
    visibility: str | None
    revisions: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    pull_requests: dict[int, str] = field(default_factory=dict)  # number -> title


def validate_metadata(readme: str) -> list[str]:
    """The README checks that the Hub's validate-yaml endpoint makes, reduced to what model cards use."""
    match = re.match(r"---\n(.*?)\n---\n", readme, re.DOTALL)
    if match is None:
        return ["no YAML front matter"]
    data = yaml.safe_load(match.group(1))
    if not isinstance(data, dict):
        return ["metadata is not a mapping"]
    errors = []
    for key in ("library_name", "license", "base_model", "base_model_relation", "pipeline_tag"):
        if key in data and not isinstance(data[key], str):
            errors.append(f"{key} must be a string")
    if data.get("base_model_relation") not in (None, "adapter", "merge", "quantized", "finetune"):
        errors.append("base_model_relation is not a known relation")
    for key in ("tags", "datasets"):
        if key in data and not (isinstance(data[key], list) and all(isinstance(v, str) for v in data[key])):
            errors.append(f"{key} must be a list of strings")
    for model in data.get("model-index", []):
        if not isinstance(model.get("name"), str):
            errors.append("model-index entry without a name")
        for result in model.get("results", []):
            if not isinstance(result.get("task", {}).get("type"), str):
                errors.append("model-index result without task.type")
            dataset = result.get("dataset", {})
            if not (isinstance(dataset.get("type"), str) and isinstance(dataset.get("name"), str)):
                errors.append("model-index result without dataset.type and dataset.name")
            for metric in result.get("metrics", []):
                if not isinstance(metric.get("type"), str) or not isinstance(metric.get("value"), (int, float, str)):
                    errors.append(f"model-index metric without type or value: {metric}")
    return errors


class FakeHub:
    """Threaded HTTP server on an ephemeral localhost port; `close()` stops it (use as a context manager)."""

    def __init__(self, lfs_patterns: tuple[str, ...] = (), token: str | None = None) -> None:
        self.lfs_patterns = lfs_patterns
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.commits: list[Commit] = []
        self.lfs_objects: dict[str, bytes] = {}
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-hub", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeHub":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- API, called under the lock

    def handle(
        self, method: str, raw_path: str, query: dict[str, str], body: bytes, authorization: str | None = None
    ) -> tuple[int, Any]:
        """Route one request; returns (status, JSON-able body or bytes)."""
        if (self.token is not None and raw_path.startswith(("/api/repos/", "/api/models/"))
                and authorization != f"Bearer {self.token}"):
            return 401, {"error": "Invalid credentials in Authorization header"}
        if method == "POST" and raw_path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if method == "GET" and raw_path == "/api/agent-harnesses":
            return 200, {"standardEnvVars": [], "harnesses": {}}
        if method == "POST" and raw_path == "/api/validate-yaml":
            errors = validate_metadata(json.loads(body)["content"])
            return (400 if errors else 200), {"errors": [{"message": e} for e in errors], "warnings": []}
        if match := _REPO_ROUTE.fullmatch(raw_path):
            repo_id, action, revision = match.group(1), match.group(2), unquote(match.group(3))
            if repo_id not in self.repos:
                return 404, {"error": f"Repository {repo_id} not found"}
            if method == "POST" and action == "preupload":
                return self._preupload(self.repos[repo_id], revision, query, json.loads(body))
            if method == "POST" and action == "commit":
                return self._commit(self.repos[repo_id], revision, query, body)
            if method == "POST" and action == "branch":
                return self._create_branch(self.repos[repo_id], revision, json.loads(body or b"{}"))
        if match := _DISCUSSIONS_ROUTE.fullmatch(raw_path):
            repo = self.repos.get(match.group(1))
            if repo is None:
                return 404, {"error": "Repository not found"}
            if method == "POST" and match.group(2) is None:
                return self._open_pull_request(repo, json.loads(body))
            if method == "GET" and match.group(2) is not None and int(match.group(2)) in repo.pull_requests:
                return 200, self._pull_request_details(repo, int(match.group(2)))
        if method == "POST" and (match := _LFS_BATCH_ROUTE.fullmatch(raw_path)):
            return self._lfs_batch(json.loads(body))
        if method == "PUT" and (match := _LFS_UPLOAD_ROUTE.fullmatch(raw_path)):
            if hashlib.sha256(body).hexdigest() != match.group(1):
                return 400, {"error": "content does not match its sha256 oid"}
            self.lfs_objects[match.group(1)] = body
            return 200, b""
        if method == "POST" and raw_path == "/_lfs/verify":
            payload = json.loads(body)
            stored = self.lfs_objects.get(payload["oid"])
            return (200, {}) if stored is not None and len(stored) == payload["size"] else (404, {"error": "missing"})
        self.unhandled.append(f"{method} {raw_path}")
        return 404, {"error": f"fake hub does not serve {method} {raw_path}"}

    def _create_repo(self, payload: dict[str, Any]) -> tuple[int, Any]:
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        url = f"{self.endpoint}/{repo_id}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": url}
        self.repos[repo_id] = Repo(repo_id=repo_id, visibility=payload.get("visibility"))
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def _create_branch(self, repo: Repo, branch: str, payload: dict[str, Any]) -> tuple[int, Any]:
        if branch in repo.revisions:
            return 409, {"error": f"Branch {branch} already exists"}
        repo.revisions[branch] = dict(repo.revisions[payload.get("startingPoint", "main")])
        return 200, {}

    def _preupload(self, repo: Repo, revision: str, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
        if revision not in repo.revisions:
            return 404, {"error": f"Revision {revision} not found"}
        files = [
            {
                "path": entry["path"],
                "uploadMode": "lfs" if any(fnmatch.fnmatch(entry["path"], p) for p in self.lfs_patterns) else "regular",
                "shouldIgnore": False,
            }
            for entry in payload["files"]
        ]
        return 200, {"files": files, "commitOid": _oid(repr(repo.revisions[revision]))}

    def _lfs_batch(self, payload: dict[str, Any]) -> tuple[int, Any]:
        objects = []
        for entry in payload["objects"]:
            answer = {"oid": entry["oid"], "size": entry["size"], "authenticated": True}
            if entry["oid"] not in self.lfs_objects:
                answer["actions"] = {
                    "upload": {"href": f"{self.endpoint}/_lfs/upload/{entry['oid']}"},
                    "verify": {"href": f"{self.endpoint}/_lfs/verify"},
                }
            objects.append(answer)
        return 200, {"transfer": "basic", "objects": objects}

    def _open_pull_request(self, repo: Repo, payload: dict[str, Any]) -> tuple[int, Any]:
        number = len(repo.pull_requests) + 1
        repo.pull_requests[number] = payload["title"]
        repo.revisions[f"refs/pr/{number}"] = dict(repo.revisions["main"])
        return 200, {"num": number, "url": f"{self.endpoint}/{repo.repo_id}/discussions/{number}"}

    def _pull_request_details(self, repo: Repo, number: int) -> dict[str, Any]:
        return {
            "title": repo.pull_requests[number], "num": number, "author": {"name": USER},
            "createdAt": "2025-01-01T00:00:00.000Z", "status": "draft", "isPullRequest": True,
            "repo": {"name": repo.repo_id, "type": "model"}, "events": [], "changes": {"base": "refs/heads/main"},
            "filesWithConflicts": [], "diff": "",
        }

    def _commit(self, repo: Repo, revision: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        pr_url = None
        if query.get("create_pr") == "1":
            _, opened = self._open_pull_request(repo, {"title": "commit"})
            revision, pr_url = f"refs/pr/{opened['num']}", opened["url"]
        if revision not in repo.revisions:
            return 404, {"error": f"Revision {revision} not found"}
        summary, files, lfs_paths, deleted = "", {}, [], []
        for line in body.decode().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value["summary"]
            elif item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                content = self.lfs_objects.get(value["oid"])
                if content is None or len(content) != value["size"]:
                    return 422, {"error": f"LFS object {value['oid']} for {value['path']} was never uploaded"}
                files[value["path"]] = content
                lfs_paths.append(value["path"])
            elif item["key"] == "deletedFile":
                deleted.append(value["path"])
            else:
                return 400, {"error": f"unexpected commit operation {item['key']}"}
        tree = repo.revisions[revision]
        tree.update(files)
        for path in deleted:
            tree.pop(path, None)
        oid = _oid(f"{repo.repo_id}@{revision}#{len(self.commits)}")
        self.commits.append(Commit(repo.repo_id, revision, summary, files, sorted(lfs_paths), oid))
        return 200, {"commitUrl": f"{self.endpoint}/{repo.repo_id}/commit/{oid}", "commitOid": oid,
                     "success": True, "pullRequestUrl": pr_url}


def _oid(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10  # an idle keep-alive connection never holds a server thread for long

        def _serve(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            body = self._read_body()
            with hub._lock:
                authorization = self.headers.get("authorization")
                hub.requests.append(Request(self.command, url.path, query, authorization))
                status, payload = hub.handle(self.command, url.path, query, body, authorization)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _read_body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("content-length", 0)))

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


def make_model_folder(folder: Path, *, kind: str = "llm_srec") -> Path:
    """A saved-model folder built from plain files (no modeling code needed), plus trainer leftovers.

    It holds what `save_pretrained` and the trainer write: config with `auto_map`, safetensors weights, a
    modeling source, card inputs, and trainer state and a nested checkpoint that a push must skip.
    """
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    sasrec = {"model_type": "sasrec", "num_items": 10, "hidden_size": 4, "num_blocks": 1, "num_heads": 1,
              "maxlen": 8, "dropout": 0.1}
    if kind == "llm_srec":
        config = {
            "model_type": "llm_srec", "architectures": ["LLMSRecForRecommendation"],
            "auto_map": {"AutoConfig": "configuration_llm_srec.LLMSRecConfig",
                         "AutoModel": "modeling_llm_srec.LLMSRecForRecommendation"},
            "llm_name_or_path": "meta-llama/Llama-3.2-3B-Instruct",
            "llm_config": {"model_type": "llama", "hidden_size": 3072, "num_hidden_layers": 28},
            "sasrec_config": sasrec, "head_hidden_size": 2048, "output_size": 128, "history_length": 10,
            "item_prompt_template": 'The item title and item embedding are as follows: "{title}"[HistoryEmb], '
                                    "then generate item representation token:[ItemOut]",
            "transformers_version": "5.24.0",
        }
        weights = {"user_head.0.weight": torch.arange(24.0).reshape(6, 4),
                   "sasrec.item_embedding.weight": torch.ones(11, 4)}
        source = "modeling_llm_srec.py"
    else:
        config = {**sasrec, "architectures": ["SASRecModel"],
                  "auto_map": {"AutoConfig": "configuration_sasrec.SASRecConfig",
                               "AutoModel": "modeling_sasrec.SASRecModel"}}
        weights = {"item_embedding.weight": torch.ones(11, 4)}
        source = "modeling_sasrec.py"
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / source).write_text("# model code travels with the weights\n")
    (folder / "metrics.json").write_text(json.dumps({
        "sampled(1+99, seed=0)": {"NDCG@10": 0.31, "HR@10": 0.52, "NDCG@20": 0.35, "HR@20": 0.66, "num_users": 50.0},
        "full-catalog": {"NDCG@10": 0.041, "HR@10": 0.083, "NDCG@20": 0.052, "HR@20": 0.12, "num_users": 50.0},
    }))
    (folder / "data_statistics.json").write_text(json.dumps({
        "dataset": "synthetic", "num_users": 50, "num_items": 10, "num_interactions": 400, "avg_sequence_length": 8.0,
    }))
    save_file({"state.0.exp_avg": torch.ones(6, 4)}, str(folder / "optimizer.safetensors"))
    (folder / "optimizer.json").write_text("{}")
    (folder / "rng_state.json").write_text("{}")
    (folder / "trainer_state.json").write_text("{}")
    (folder / "training_args.bin").write_bytes(b"pickled arguments")
    (folder / "checkpoint-5").mkdir(exist_ok=True)
    (folder / "checkpoint-5" / "model.safetensors").write_bytes(b"older weights")
    return folder
