from __future__ import annotations

from contactsync.controller.conditions import Status, newsworthy, set_condition, transitions


def test_last_transition_time_moves_only_when_status_flips() -> None:
    first = set_condition([], "Ready", "False", "SecretNotFound", "no secret", 1, at="t1")
    again = set_condition(first, "Ready", "False", "PrefectUnavailable", "down", 2, at="t2")
    assert again[0]["lastTransitionTime"] == "t1"  # same status: reason may change, time not
    assert (again[0]["reason"], again[0]["observedGeneration"]) == ("PrefectUnavailable", 2)
    flipped = set_condition(again, "Ready", "True", "Reconciled", "in sync", 2, at="t3")
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_conditions_keep_a_stable_order_and_the_others_untouched() -> None:
    conditions = set_condition([], "Stalled", "False", "Reconciled", "", 1, at="t")
    conditions = set_condition(conditions, "Ready", "True", "Reconciled", "", 1, at="t")
    assert [c["type"] for c in conditions] == ["Ready", "Stalled"]
    assert conditions[1]["status"] == "False"


def test_transitions_are_the_status_changes() -> None:
    before = set_condition([], "Ready", "False", "SecretNotFound", "", 1, at="t")
    after = set_condition(before, "Ready", "True", "Reconciled", "", 1, at="t")
    assert [c["type"] for c in transitions(before, after)] == ["Ready"]
    assert transitions(after, after) == []


def test_events_go_with_ready_and_with_stalls_that_start_or_end() -> None:
    def conditions(**statuses: Status) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for type_, status in statuses.items():
            out = set_condition(out, type_, status, "R", "", 1, at="t")
        return out

    def news(before: list[dict[str, str]], after: list[dict[str, str]]) -> list[tuple[str, str]]:
        return [(c["type"], c["status"]) for c in newsworthy(before, after)]

    born = conditions(Ready="True", Stalled="False", Reconciling="False")
    assert news([], born) == [("Ready", "True")]  # a Stalled born False is no news
    stalled = conditions(Ready="False", Stalled="True", Reconciling="False")
    assert news(born, stalled) == [("Ready", "False"), ("Stalled", "True")]
    assert news(stalled, born) == [("Ready", "True"), ("Stalled", "False")]  # recovery is
    assert news([], conditions(Stalled="True")) == [("Stalled", "True")]
    assert news(born, born) == []
