"""GitOps for real: ArgoCD syncs examples/kubernetes from Git and reports Kanal's health.

ArgoCD's application controller and repo server (``dev/stack up argocd``) run against the
kube-apiserver of ``dev/stack``, with Kanal's health checks registered in argocd-cm from
docs/argocd.md, as a user would. A Git repository served by ``git daemon`` holds a copy
of the project's examples adapted to this machine (Kafka, Azurite, a file path), the way
a user's fork would; the ``telemetry-pipeline`` Application of
examples/argocd/application.yaml points at it. The operator and the workers run as
processes (dev/kube_local.py), so the connectors really run. The tests run in order and
share one Application.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.admin import AdminClient, NewTopic

from dev.kube_local import (
    Kubectl,
    Process,
    Workers,
    ready,
    start_operator,
    start_workers,
    task_states,
    wait_for,
)
from dev.stack_env import ROOT, stack_env
from tests.argocd_health import documented_argocd_cm

# the first run builds argo-cd when $KANAL_CACHE has none yet (tens of minutes on 2 cores)
pytestmark = [pytest.mark.e2e, pytest.mark.argocd_live, pytest.mark.timeout(5400)]

APPLICATION = "applications.argoproj.io"
CLUSTER = "telemetry"
CONNECTORS = ("azure-blob-sink", "telemetry-file-sink", "telemetry-generator")
FILE_SINK = "examples/kubernetes/file-sink.yaml"


@dataclass
class GitOps:
    kubectl: Kubectl
    """In the Application's destination namespace."""
    argocd: Kubectl
    """In ArgoCD's namespace."""
    app: str
    repo: Path
    """The work tree whose commits are pushed to the repository ArgoCD reads."""
    tmp: Path
    operator: Process
    workers: Workers | None = None
    transcript: list[str] = field(default_factory=list)

    def application(self) -> dict[str, Any]:
        return self.argocd.get(APPLICATION, self.app)

    def sync_and_health(self) -> tuple[str, str]:
        status = self.application().get("status") or {}
        return ((status.get("sync") or {}).get("status", ""),
                (status.get("health") or {}).get("status", ""))

    def resources(self) -> dict[str, dict[str, Any]]:
        """The managed resources as ArgoCD reports them, by ``Kind/name``."""
        status = self.application().get("status") or {}
        return {f"{r['kind']}/{r['name']}": r for r in status.get("resources") or []}

    def record(self, moment: str) -> None:
        """``kubectl get application -o wide`` now, for the transcript."""
        table = self.argocd.run("get", APPLICATION, self.app, "-o", "wide", check=False)
        self.transcript += [f"# {moment}",
                            *(table.stdout or table.stderr).rstrip().splitlines()]

    def refresh(self, mode: str = "normal") -> None:
        """Ask ArgoCD to look at Git now (what a Git webhook does), and wait until it did."""
        self.argocd.run("annotate", APPLICATION, self.app, "--overwrite",
                        f"argocd.argoproj.io/refresh={mode}")
        wait_for(lambda: "argocd.argoproj.io/refresh" not in
                 (self.application()["metadata"].get("annotations") or {}), 60,
                 f"ArgoCD to do the {mode} refresh")

    def push(self, message: str) -> str:
        git(self.repo, "commit", "-q", "-am", message)
        git(self.repo, "push", "-q", "origin", "main")
        self.refresh()
        return git(self.repo, "rev-parse", "HEAD").strip()

    def synced_to(self, revision: str) -> bool:
        status = self.application().get("status") or {}
        operation = status.get("operationState") or {}
        sync = status.get("sync") or {}
        return (sync.get("revision") == revision and sync.get("status") == "Synced" and
                operation.get("phase") == "Succeeded" and
                (operation.get("syncResult") or {}).get("revision") == revision)


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def fork(work: Path, remote: Path, namespace: str, kafka: str, azurite: str,
         sink_file: Path) -> None:
    """A user's copy of the project's examples/kubernetes, adapted to this machine."""
    account = dict(p.split("=", 1) for p in azurite.split(";") if "=" in p)
    local = {
        "cluster.yaml": {"bootstrapServers": kafka},
        "telemetry-generator.yaml": {"config": {"topic": f"vehicle.telemetry.{namespace}",
                                                "rate": 50}},
        "file-sink.yaml": {"config": {"topics": f"vehicle.telemetry.{namespace}",
                                      "file": str(sink_file)}},
        "azure-blob-sink.yaml": {"config": {
            "topics": f"vehicle.speeding.{namespace}",
            "azblob.account.name": account["AccountName"],
            "store.url": account["BlobEndpoint"],
            "azblob.container.name": f"telemetry-{namespace}",
            "errors.deadletterqueue.topic.name": f"vehicle.speeding.{namespace}.dlq"}},
    }
    folder = work / "examples" / "kubernetes"
    folder.mkdir(parents=True)
    for source in sorted((ROOT / "examples" / "kubernetes").glob("*.yaml")):
        manifest = yaml.safe_load(source.read_text())
        changes = local[source.name]
        manifest["spec"].update({k: v for k, v in changes.items() if k != "config"})
        manifest["spec"].setdefault("config", {}).update(changes.get("config", {}))
        (folder / source.name).write_text(yaml.safe_dump(manifest, sort_keys=False))
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.email", "gitops@kanal.dev")
    git(work, "config", "user.name", "Kanal GitOps test")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "Kanal's vehicle-telemetry pipeline")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "-q", "origin", "main")


def telemetry_application(name: str, repo_url: str, namespace: str) -> dict[str, Any]:
    """examples/argocd/application.yaml's pipeline, pointed at the fork."""
    apps = yaml.safe_load_all((ROOT / "examples" / "argocd" / "application.yaml").read_text())
    app = next(a for a in apps if a["spec"]["source"]["path"] == "examples/kubernetes")
    app["metadata"]["name"] = name
    app["spec"]["source"]["repoURL"] = repo_url
    app["spec"]["destination"]["namespace"] = namespace
    assert isinstance(app, dict)
    return app


@pytest.fixture(scope="module")
def gitops(kube: dict[str, str], kafka: str, azurite: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitOps]:
    argocd_env = stack_env("argocd")
    tmp = tmp_path_factory.mktemp("argocd")
    suffix = uuid.uuid4().hex[:6]
    namespace, app = f"telemetry-{suffix}", f"telemetry-pipeline-{suffix}"
    argocd = Kubectl(kube["KUBECTL"], kube["KUBECONFIG"], argocd_env["KANAL_ARGOCD_NAMESPACE"])
    # Kanal's health checks, registered as docs/argocd.md says.
    argocd.run("apply", "--server-side", "--field-manager=kanal", "-f", "-",
               stdin=yaml.safe_dump(documented_argocd_cm()))
    admin = AdminClient({"bootstrap.servers": kafka})
    topics = [f"vehicle.telemetry.{namespace}", f"vehicle.speeding.{namespace}"]
    for future in admin.create_topics([NewTopic(t, 2, 1) for t in topics]).values():
        future.result(30)
    remote = Path(argocd_env["KANAL_ARGOCD_GIT_ROOT"]) / f"kanal-{suffix}.git"
    fork(tmp / "fork", remote, namespace, kafka, azurite, tmp / "telemetry.jsonl")
    kubectl, operator = start_operator(kube, namespace, tmp)
    account = dict(p.split("=", 1) for p in azurite.split(";") if "=" in p)
    kubectl.run("create", "secret", "generic", "azure-credentials",
                f"--from-literal=account-key={account['AccountKey']}")
    env = GitOps(kubectl, argocd, app, tmp / "fork", tmp, operator)
    try:
        argocd.apply(telemetry_application(
            app, f"{argocd_env['KANAL_ARGOCD_GIT_URL']}/{remote.name}", namespace))
        yield env
    finally:
        application = argocd.run("get", APPLICATION, app, "-o", "yaml", check=False).stdout
        (tmp / "application.yaml").write_text(application)
        argocd.run("delete", APPLICATION, app, "--wait=false", check=False)
        wait_for(lambda: not argocd.exists(APPLICATION, app), 120,
                 "ArgoCD to delete the Application and its resources")
        env.record("after the Application was deleted (its resources go with it)")
        print("\n".join(env.transcript))
        if env.workers is not None:
            env.workers.stop_all()
        operator.stop()
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)
        for topic in admin.delete_topics(topics).values():
            topic.result(30)
        shutil.rmtree(remote, ignore_errors=True)
        for log in sorted(tmp.glob("*.log")):
            print(f"----- {log.name} (last lines)")
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))


def connector_health(env: GitOps) -> dict[str, tuple[str, str]]:
    """ArgoCD's health of each Connector: (status, message)."""
    out = {}
    for key, resource in env.resources().items():
        kind, _, name = key.partition("/")
        health = resource.get("health") or {}
        if kind == "Connector":
            out[name] = (health.get("status", ""), health.get("message", ""))
    return out


def watch(env: GitOps, until: Callable[[tuple[str, str]], bool], timeout: float, what: str,
          ) -> list[tuple[str, str]]:
    """The distinct (sync, health) states of the Application seen until ``until(state)``
    holds for one of them (the state judged is the one recorded, never a newer read)."""
    seen: list[tuple[str, str]] = []

    def check() -> bool:
        state = env.sync_and_health()
        if not seen or seen[-1] != state:
            seen.append(state)
        return until(state)
    try:
        wait_for(check, timeout, what, interval=0.5)
    except AssertionError as exc:
        live = {name: (ready(env.kubectl.status(name)), task_states(env.kubectl.status(name)))
                for name in CONNECTORS}
        raise AssertionError(f"{exc}; states seen {seen}; ArgoCD's health "
                             f"{connector_health(env)}; the connectors' (Ready, tasks) "
                             f"{live}") from None
    return seen


def test_the_application_syncs_and_waits_for_workers(gitops: GitOps) -> None:
    """Synced from Git; the connectors exist but no worker runs: Progressing, not Healthy."""
    head = git(gitops.repo, "rev-parse", "HEAD").strip()
    wait_for(lambda: gitops.synced_to(head), 120, "the first sync")
    resources = gitops.resources()
    assert set(resources) == {f"Connector/{c}" for c in CONNECTORS} | {
        f"ConnectCluster/{CLUSTER}"}
    assert {r["status"] for r in resources.values()} == {"Synced"}
    wait_for(lambda: all(ready(gitops.kubectl.status(c)) == ("False", "NoWorkers")
                         for c in CONNECTORS), 60, "the operator's verdict: no worker yet")
    # ArgoCD refreshes an Application by itself when a resource's health status changes,
    # not when only its message does (Progressing, then Progressing for another reason).
    gitops.refresh()
    gitops.record("synced, no worker runs yet")
    waiting = connector_health(gitops)
    assert set(waiting) == set(CONNECTORS)
    for status, message in waiting.values():
        assert status == "Progressing" and "no live worker" in message, message
    cluster = gitops.resources()[f"ConnectCluster/{CLUSTER}"]["health"]
    assert cluster["status"] == "Progressing" and "0/2 workers heartbeating" in \
        cluster["message"]
    assert gitops.sync_and_health() == ("Synced", "Progressing")
    time.sleep(5)  # it stays so: nothing runs
    assert gitops.sync_and_health() == ("Synced", "Progressing")


def test_healthy_once_the_connectors_run(gitops: GitOps) -> None:
    gitops.workers, _ = start_workers(gitops.kubectl, CLUSTER, gitops.tmp, 2)
    states = watch(gitops, lambda state: state[1] == "Healthy", 120,
                   "the Application to become Healthy")
    gitops.record("workers running: every task RUNNING")
    assert states[0] == ("Synced", "Progressing") and states[-1] == ("Synced", "Healthy")
    assert all(sync == "Synced" for sync, _ in states)
    gitops.refresh()  # the messages of the moment each Connector turned Healthy are old
    for name in CONNECTORS:
        status = gitops.kubectl.status(name)
        assert {state for state, _ in task_states(status)} == {"RUNNING"}, name
        assert connector_health(gitops)[name] == ("Healthy", f"{status['taskCount']}/"
                                                  f"{status['taskCount']} task(s) RUNNING")
    wait_for(lambda: (gitops.tmp / "telemetry.jsonl").exists() and
             (gitops.tmp / "telemetry.jsonl").stat().st_size > 0, 60, "records in the file")


def test_no_drift_after_the_sync(gitops: GitOps) -> None:
    """Defaulted fields, the operator's status and finalizers are no difference to Git:
    a hard refresh (manifests regenerated, live state compared again) finds nothing, and
    self-heal never had to sync again."""
    app = gitops.application()
    history = app["status"].get("history") or []
    gitops.refresh("hard")
    assert gitops.sync_and_health() == ("Synced", "Healthy")
    assert {r["status"] for r in gitops.resources().values()} == {"Synced"}
    live = gitops.kubectl.get("connector", "telemetry-generator")
    assert live["spec"].get("state") == "running", "a defaulted field ArgoCD must ignore"
    assert live["status"]["tasks"], "the operator's status ArgoCD must ignore"
    after = gitops.application()["status"].get("history") or []
    assert [h["revision"] for h in after] == [h["revision"] for h in history]
    assert len(after) == 1, f"ArgoCD synced more than once: {json.dumps(after)}"


def test_a_failed_task_degrades_the_application(gitops: GitOps) -> None:
    """A commit that breaks the file sink: ArgoCD syncs it and reports Degraded, naming
    the failed task; reverting the commit makes it Healthy again."""
    path = gitops.repo / FILE_SINK
    sink = yaml.safe_load(path.read_text())
    folder = gitops.tmp / "a-folder"  # valid (it exists, it is writable); opening it fails
    folder.mkdir()
    sink["spec"]["config"]["file"] = str(folder)
    path.write_text(yaml.safe_dump(sink, sort_keys=False))
    broken = gitops.push("File sink: write into a folder instead of a file")
    states = watch(gitops, lambda state: state == ("Synced", "Degraded"), 120,
                   "the Application to become Degraded")
    gitops.record("a commit made the file sink's task FAIL")
    assert gitops.synced_to(broken), states
    status, message = connector_health(gitops)["telemetry-file-sink"]
    assert status == "Degraded" and "FAILED" in message and str(folder) in message, message
    assert "FAILED" in {state for state, _ in task_states(
        gitops.kubectl.status("telemetry-file-sink"))}
    git(gitops.repo, "revert", "--no-edit", "HEAD")
    git(gitops.repo, "push", "-q", "origin", "main")
    gitops.refresh()
    fixed = git(gitops.repo, "rev-parse", "HEAD").strip()
    try:
        watch(gitops, lambda state: state == ("Synced", "Healthy") and
              gitops.synced_to(fixed), 180,
              "the Application to recover after the revert")
    except AssertionError as exc:
        live = gitops.kubectl.get("connector", "telemetry-file-sink")
        raise AssertionError(f"{exc}\nthe file sink: {json.dumps(live['status'])}") from None
    gitops.record("the commit reverted: Healthy again")
    assert connector_health(gitops)["telemetry-file-sink"][0] == "Healthy"
