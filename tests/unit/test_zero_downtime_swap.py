"""The running service moves to a new champion while requests keep coming: none fails or is dropped."""

import socket
import threading

import httpx
import uvicorn

from pipelines.deployment import admin_headers
from tests.waiting import wait_for, wait_until_started


def test_swap_under_load_drops_and_fails_nothing(tmp_path, toy_registry):
    from pipelines.registry import promote_version
    from pipelines.serving.app import create_app
    from pipelines.serving.prediction_log import PredictionLog

    # two visibly different models
    versions = [toy_registry.register("swap", toy_registry.log(seed=i, flip=flip, rows=300))
                for i, flip in enumerate((False, True))]
    client = toy_registry.client
    promote_version(client, "swap", versions[0])

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}", flush_seconds=0.01)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app("swap", poll_seconds=0, prediction_log=log),
                                           host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    wait_until_started(server)

    answers: list[tuple[int, str]] = []
    stop = threading.Event()
    body = {"dataframe_records": [{"signal": 0.5, "group": "a"}]}

    def load():
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                response = http.post(f"{url}/invocations", json=body)
                answers.append((response.status_code, response.headers.get("X-Model-Version", "")))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    wait_for(lambda: len(answers) >= 40, what="answers before the swap")
    promote_version(client, "swap", versions[1])
    assert httpx.post(f"{url}/admin/reload", timeout=60, headers=admin_headers()).json()["version"] == versions[1]
    wait_for(lambda: sum(v == versions[1] for _, v in answers[-40:]) >= 20, what="answers from the new version")
    stop.set()
    for worker in workers:
        worker.join()
    server.should_exit = True

    statuses = {status for status, _ in answers}
    served_versions = [v for _, v in answers]
    assert statuses == {200}, f"non-200 answers during the swap: {statuses}"
    assert served_versions[0] == versions[0] and served_versions[-1] == versions[1]
    first_new = served_versions.index(versions[1])
    # Once swapped, never back: only requests already in flight (one per client) may still carry the old one.
    assert served_versions[first_new:].count(versions[0]) <= len(workers)
    wait_for(lambda: log.rows_written >= len(answers), what=lambda: f"every answer logged: {log.state}")
    log.close()
    assert log.rows_written == len(answers)  # every served row was logged
