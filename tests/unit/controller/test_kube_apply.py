from __future__ import annotations

from contactsync.controller.kube_apply import is_subset, merge_owners


def test_subset_ignores_server_defaults_but_not_differences() -> None:
    live = {"spec": {"replicas": 1, "revisionHistoryLimit": 10, "template": {"x": [1, 2]}}}
    assert is_subset({"spec": {"replicas": 1}}, live)
    assert not is_subset({"spec": {"replicas": 2}}, live)
    assert not is_subset({"spec": {"template": {"x": [1]}}}, live)  # list length matters


def test_an_empty_map_matches_an_absent_one() -> None:
    assert is_subset({"metadata": {"annotations": {}}}, {"metadata": {"annotations": None}})
    assert not is_subset({"metadata": {"annotations": {"a": "b"}}}, {"metadata": {}})


def test_shared_owners_converge_whatever_the_order() -> None:
    a, b = {"uid": "a", "name": "x"}, {"uid": "b", "name": "y"}
    assert merge_owners([a], [b, a]) == [b, a]  # already an owner: nothing changes
    assert merge_owners([b], [a]) == [a, b]  # a new owner is appended
    assert is_subset({"ownerReferences": merge_owners([a], [b, a])}, {"ownerReferences": [b, a]})
