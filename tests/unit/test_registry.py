"""Alias moves against a real (SQLite) MLflow registry."""

import pytest

from pipelines.registry import alias_version, promote_version, register_version


@pytest.fixture()
def client(toy_registry):
    """A registry client with one logged model (``client.model_uri``) to register versions of."""
    client = toy_registry.client
    client.model_uri = toy_registry.log_constant().uri
    return client


def register(client, run_id: str) -> str:
    tags = {"airflow_dag_id": "train_x", "airflow_run_id": run_id}
    return register_version(client, "toy", client.model_uri, tags)


def test_promotion_keeps_previous_for_rollback(client):
    v1 = register(client, "run-1")
    assert promote_version(client, "toy", v1).previous_version is None
    v2 = register(client, "run-2")
    promotion = promote_version(client, "toy", v2)
    assert (promotion.version, promotion.previous_version) == (v2, v1)
    assert alias_version(client, "toy", "champion") == v2
    assert alias_version(client, "toy", "previous") == v1
    assert alias_version(client, "toy", "challenger") is None  # no dangling alias


def test_retried_registration_reuses_its_version(client):
    first = register(client, "run-1")
    assert register(client, "run-1") == first
    assert len(client.search_model_versions("name='toy'")) == 1


def test_promoting_the_champion_again_changes_nothing(client):
    v1 = register(client, "run-1")
    promote_version(client, "toy", v1)
    promote_version(client, "toy", v1)
    assert alias_version(client, "toy", "champion") == v1 and alias_version(client, "toy", "previous") is None


def test_an_unreachable_registry_is_not_read_as_no_champion():
    from mlflow.exceptions import MlflowException

    class DownRegistry:
        def get_model_version_by_alias(self, name, alias):
            raise MlflowException("API request failed: connection refused", error_code="TEMPORARILY_UNAVAILABLE")

    with pytest.raises(MlflowException, match="connection refused"):
        alias_version(DownRegistry(), "toy", "champion")


def test_a_failed_alias_move_leaves_no_challenger(client, monkeypatch):
    v1 = register(client, "run-1")
    promote_version(client, "toy", v1)
    v2 = register(client, "run-2")
    real_set = client.set_registered_model_alias

    def fail_on_champion(name, alias, version):
        if alias == "champion":
            raise RuntimeError("store went away")
        return real_set(name, alias, version)

    monkeypatch.setattr(client, "set_registered_model_alias", fail_on_champion)
    with pytest.raises(RuntimeError):
        promote_version(client, "toy", v2)
    monkeypatch.undo()
    assert alias_version(client, "toy", "challenger") is None
    assert alias_version(client, "toy", "champion") == v1
    promote_version(client, "toy", v2)  # the retry completes the move
    assert (alias_version(client, "toy", "champion"), alias_version(client, "toy", "previous")) == (v2, v1)


def test_rollback_to_previous_and_back_again(client):
    from pipelines.registry import rollback

    v1, v2 = register(client, "run-1"), None
    promote_version(client, "toy", v1)
    v2 = register(client, "run-2")
    promote_version(client, "toy", v2)
    back = rollback(client, "toy", "v2 drops JFK evenings")
    assert (back.version, back.previous_version) == (v1, v2)
    assert (alias_version(client, "toy", "champion"), alias_version(client, "toy", "previous")) == (v1, v2)
    assert client.get_model_version("toy", v1).tags["rollback_reason"] == "v2 drops JFK evenings"
    assert client.get_model_version("toy", v2).tags["demoted_reason"] == "v2 drops JFK evenings"
    again = rollback(client, "toy", "false alarm")  # a rollback can itself be undone
    assert again.version == v2 and alias_version(client, "toy", "previous") == v1


def test_rollback_refuses_what_it_cannot_do(client):
    from pipelines.registry import AliasMoveError, rollback

    v1 = register(client, "run-1")
    promote_version(client, "toy", v1)
    with pytest.raises(AliasMoveError, match="no 'previous' version"):
        rollback(client, "toy", "why")
    with pytest.raises(AliasMoveError, match="version 7 does not exist"):
        rollback(client, "toy", "why", to_version="7")
    with pytest.raises(AliasMoveError, match="already the champion"):
        rollback(client, "toy", "why", to_version=v1)
    assert alias_version(client, "toy", "champion") == v1


def test_staged_challenger_leaves_champion_until_promoted(client):
    from pipelines.registry import promote_challenger, stage_challenger

    v1 = register(client, "run-1")
    promote_version(client, "toy", v1)
    v2 = register(client, "run-2")
    staged = stage_challenger(client, "toy", v2, "canary", 0.25)
    assert (staged.alias, staged.rollout) == ("challenger", "canary")
    assert (alias_version(client, "toy", "champion"), alias_version(client, "toy", "challenger")) == (v1, v2)
    assert client.get_model_version("toy", v2).tags["canary_share"] == "0.25"
    promoted = promote_challenger(client, "toy", "canary AUC 0.74 vs 0.71 over 2 days")
    assert (promoted.version, promoted.previous_version) == (v2, v1)
    assert alias_version(client, "toy", "challenger") is None
    assert alias_version(client, "toy", "previous") == v1
    assert client.get_model_version("toy", v2).tags["promotion_reason"].startswith("canary AUC")


def test_retired_challenger_stops_without_touching_champion(client):
    from pipelines.registry import AliasMoveError, retire_challenger, stage_challenger

    v1 = register(client, "run-1")
    promote_version(client, "toy", v1)
    with pytest.raises(AliasMoveError, match="no 'challenger'"):
        retire_challenger(client, "toy", "nothing staged")
    v2 = register(client, "run-2")
    stage_challenger(client, "toy", v2, "shadow", 0.1)
    retire_challenger(client, "toy", "shadow log loss worse")
    assert alias_version(client, "toy", "challenger") is None and alias_version(client, "toy", "champion") == v1
    assert client.get_model_version("toy", v2).tags["retired_reason"] == "shadow log loss worse"


def test_restore_aliases_undoes_a_promotion(client):
    from pipelines.registry import restore_aliases

    v1 = register(client, "run-1")
    promote_version(client, "toy", v1)
    v2 = register(client, "run-2")
    promotion = promote_version(client, "toy", v2)
    restore_aliases(client, "toy", promotion.before)
    assert alias_version(client, "toy", "champion") == v1
    assert alias_version(client, "toy", "previous") is None


def test_a_release_decided_on_one_challenger_never_moves_another(client, flights_config, tmp_path):
    """The operator pages' promote and retire forms name the version they were shown: if another version has
    become challenger since, nothing moves."""
    from pipelines.config import StatePaths
    from pipelines.registry import AliasMoveError, stage_challenger
    from pipelines.release import release_challenger

    cfg = flights_config.model_copy(update={"registered_model_name": "toy"})
    state = StatePaths(root=tmp_path / "state")
    promote_version(client, "toy", register(client, "run-1"))
    stage_challenger(client, "toy", register(client, "run-2"), "shadow", 0.1)
    stage_challenger(client, "toy", v3 := register(client, "run-3"), "shadow", 0.1)
    with pytest.raises(AliasMoveError, match="v2 is no longer the challenger of toy"):
        release_challenger(cfg, state, "promote", "shadow looked fine", version="2")
    assert alias_version(client, "toy", "champion") == "1" and alias_version(client, "toy", "challenger") == v3
    release_challenger(cfg, state, "promote", "shadow looked fine", version=v3)
    assert alias_version(client, "toy", "champion") == v3


def test_a_candidate_judged_against_a_champion_that_has_since_moved_is_not_registered(client):
    """An approval can come days after the gate: if the champion changed meanwhile (a rollback, a promotion),
    register refuses; a retry of the run that made the champion itself passes."""
    from types import SimpleNamespace

    from pipelines.errors import StaleComparisonError
    from pipelines.training_steps.promotion import _refuse_if_the_champion_moved

    cfg, ctx = SimpleNamespace(model_name="toy", name="toy"), SimpleNamespace(run_id="run-9")
    v1 = register(client, "run-1")
    promote_version(client, "toy", v1)
    judged_v1 = v1  # the champion the gate compared the candidate with
    _refuse_if_the_champion_moved(client, cfg, ctx, judged_v1)  # unchanged: fine
    promote_version(client, "toy", register(client, "run-2"))
    with pytest.raises(StaleComparisonError, match="champion is v2 now; the gate compared this candidate with v1"):
        _refuse_if_the_champion_moved(client, cfg, ctx, judged_v1)
    with pytest.raises(StaleComparisonError, match="compared this candidate with no champion"):
        _refuse_if_the_champion_moved(client, cfg, ctx, None)
    promote_version(client, "toy", register(client, "run-9"))  # this run's own version, from an earlier try
    _refuse_if_the_champion_moved(client, cfg, ctx, judged_v1)
