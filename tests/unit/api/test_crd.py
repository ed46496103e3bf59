"""The generated CRD: committed as generated, structural, bounded, and holding
exactly the fields of the pydantic models."""

from __future__ import annotations

import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from contactsync.api import crd
from contactsync.api.spec import ContactSyncSpec, Model
from contactsync.api.status import ContactSyncStatus

ROOT = Path(__file__).parents[3]
COMMITTED = ROOT / "crds" / "contactsync.dev_contactsyncs.yaml"
# kubectl's client-side apply keeps the whole object in an annotation, which
# the server caps at 256 KiB; stay well below so the CRD can grow.
ANNOTATION_LIMIT = 262_144


def openapi() -> dict[str, Any]:
    schema: dict[str, Any] = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path, like `spec.source.url` or `status.conditions[]`."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if "additionalProperties" in schema:
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def crd_fields(schema: dict[str, Any], prefix: str) -> set[str]:
    """Field paths; an array's item node is no field of its own."""
    return {path for path, _ in nodes(schema, prefix) if not path.endswith(("[]", "{}"))} - {prefix}


def _models_in(annotation: Any) -> Iterator[tuple[type[BaseModel], bool]]:
    """The models an annotation holds, and whether they sit inside a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
        return
    in_list = typing.get_origin(annotation) is list
    for arg in typing.get_args(annotation):
        for model, nested_list in _models_in(arg):
            yield model, in_list or nested_list


def model_fields(model: type[BaseModel], prefix: str) -> set[str]:
    """Every field of a model, recursively, by alias: the paths a manifest can set."""
    paths: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        paths.add(path)
        for child, in_list in _models_in(info.annotation):
            paths |= model_fields(child, f"{path}[]" if in_list else path)
    return paths


def required_fields(model: type[BaseModel], prefix: str) -> set[str]:
    paths: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        if info.is_required():
            paths.add(path)
        for child, in_list in _models_in(info.annotation):
            paths |= required_fields(child, f"{path}[]" if in_list else path)
    return paths


def crd_required(schema: dict[str, Any], prefix: str) -> set[str]:
    return {
        f"{path}.{name}"
        for path, node in nodes(schema, prefix)
        for name in node.get("required", [])
    }


def test_committed_file_is_the_generated_one() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == crd.render_crd(), (
        "crds/ is stale: PYTHONPATH=operator python -m contactsync.api.crd"
        " > crds/contactsync.dev_contactsyncs.yaml"
    )
    assert yaml.safe_load(COMMITTED.read_text(encoding="utf-8")) == crd.build_crd()


def test_module_entry_point_prints_the_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contactsync.api.crd"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT / "operator")},
        cwd=ROOT,
    )
    assert result.stdout == COMMITTED.read_text(encoding="utf-8")


def test_small_enough_for_client_side_apply() -> None:
    assert COMMITTED.stat().st_size < ANNOTATION_LIMIT // 2


def test_names_scope_and_version() -> None:
    spec = crd.build_crd()["spec"]
    assert crd.build_crd()["metadata"]["name"] == "contactsyncs.contactsync.dev"
    assert spec["group"] == "contactsync.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "ContactSync",
        "listKind": "ContactSyncList",
        "plural": "contactsyncs",
        "singular": "contactsync",
        "shortNames": ["csync"],
        "categories": ["contactsync"],
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = crd.build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["type"], c.get("priority", 0)) for c in columns] == [
        ("Ready", "string", 0),
        ("Reason", "string", 0),
        ("Last Sync", "date", 0),
        ("Next Run", "string", 0),
        ("Age", "date", 0),
        ("Message", "string", 1),
        ("Work Pool", "string", 1),
    ]
    paths = {c["name"]: c["jsonPath"] for c in columns}
    assert paths["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    # Every column points at a field the status schema has.
    status = {path for path, _ in nodes(openapi())}
    for name in ("Last Sync", "Next Run", "Work Pool"):
        assert paths[name].removeprefix(".") in status


# Keywords a structural schema may not contain, or that mean something else in
# the OpenAPI v3.0 dialect Kubernetes speaks (exclusiveMinimum is a boolean there).
FORBIDDEN = {
    "$ref",
    "$defs",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "const",
    "title",
    "nullable",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "x-kubernetes-preserve-unknown-fields",
}


def test_schema_is_structural() -> None:
    for path, node in nodes(openapi()):
        assert not FORBIDDEN & node.keys(), path
        # A map's value schema is allowed; `false` or a map with listed fields is not.
        if "additionalProperties" in node:
            assert isinstance(node["additionalProperties"], dict), path
            assert "properties" not in node, path
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, (
            path
        )
        if node["type"] == "object" and path != "metadata":
            # A map (additionalProperties) is the one object without listed fields.
            assert node.get("properties") or "additionalProperties" in node, (
                f"{path}: an object needs its fields listed"
            )
        for name in node.get("required", []):
            assert name in node["properties"], f"{path}.{name}"


def test_every_string_and_array_is_bounded() -> None:
    # The API server estimates the cost of CEL rules from these bounds and
    # refuses rules over budget; apiVersion and kind are no rule's input.
    for path, node in nodes(openapi()):
        if path in ("apiVersion", "kind"):
            continue
        if node["type"] == "string":
            assert "maxLength" in node, path
        if node["type"] == "array":
            assert "maxItems" in node, path


def test_spec_fields_are_exactly_the_pydantic_fields() -> None:
    spec = openapi()["properties"]["spec"]
    assert crd_fields(spec, "spec") == model_fields(ContactSyncSpec, "spec")
    assert crd_required(spec, "spec") == required_fields(ContactSyncSpec, "spec")


def test_status_fields_are_exactly_the_pydantic_fields() -> None:
    status = openapi()["properties"]["status"]
    assert crd_fields(status, "status") == model_fields(ContactSyncStatus, "status")
    assert crd_required(status, "status") == required_fields(ContactSyncStatus, "status")


def test_every_field_is_described() -> None:
    for path, node in nodes(openapi()):
        if path and not path.endswith(("[]", "{}")) and not path.startswith("metadata"):
            assert node.get("description"), path


def test_defaults_match_pydantic() -> None:
    spec = openapi()["properties"]["spec"]["properties"]
    assert spec["mode"]["default"] == "incremental"
    # default factories are evaluated; object defaults are `{}` and the
    # server fills their fields from the fields' own defaults
    assert spec["encryption"]["default"] == {}
    assert spec["encryption"]["properties"]["fields"]["default"] == [
        "email",
        "phone",
        "firstName",
        "lastName",
    ]
    assert spec["destination"]["properties"]["tls"]["properties"]["sslMode"]["default"] == (
        "verify-full"
    )
    # `None` means "unset" and gets no default
    assert "default" not in spec["source"]["properties"]["url"]


def test_optional_fields_are_not_nullable() -> None:
    # The server prunes an explicit null before validation: the same as unset.
    url = openapi()["properties"]["spec"]["properties"]["source"]["properties"]["url"]
    assert url["type"] == "string"
    assert "nullable" not in url


def test_unknown_fields_are_left_to_pruning() -> None:
    # No preserve-unknown-fields anywhere: unknown fields (a `namespace` in a
    # Secret reference) are pruned, or rejected under strict field validation.
    for path, node in nodes(openapi()):
        assert "x-kubernetes-preserve-unknown-fields" not in node, path


def test_cel_rules_carry_messages() -> None:
    rules = [
        (path, rule)
        for path, node in nodes(openapi())
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 15
    for path, rule in rules:
        assert rule["message"], path


def test_immutable_fields() -> None:
    spec = openapi()["properties"]["spec"]["properties"]
    destination = spec["destination"]
    assert {"rule": "self == oldSelf"}.items() <= destination["properties"]["type"][
        "x-kubernetes-validations"
    ][0].items()
    table_rules = [r for r in destination["x-kubernetes-validations"] if "oldSelf" in r["rule"]]
    assert [r["fieldPath"] for r in table_rules] == [".table"]
    fields = spec["encryption"]["properties"]["fields"]
    assert fields["x-kubernetes-list-type"] == "set"
    assert fields["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"


class _Union(Model):
    value: int | str


class _Exclusive(Model):
    value: Annotated[int, Field(gt=0)]


class _Inner(Model):
    level: int = 3


class _Factories(Model):
    inner: _Inner = Field(default_factory=_Inner)
    tags: list[Annotated[str, Field(max_length=8)]] = Field(
        default_factory=lambda: ["a", "b"], max_length=4
    )
    note: Annotated[str, Field(max_length=8)] | None = None


def test_a_union_that_is_not_optional_is_refused() -> None:
    with pytest.raises(ValueError, match=r"only `X \| None` unions"):
        crd.model_schema(_Union)


def test_a_keyword_without_a_structural_equivalent_is_refused() -> None:
    with pytest.raises(ValueError, match="exclusiveMinimum"):
        crd.model_schema(_Exclusive)


class _Misspelt(Model):
    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [{"rule": "true", "mesage": "typo"}]}
    )


def test_a_misspelt_cel_rule_key_is_refused() -> None:
    with pytest.raises(ValueError, match="mesage"):
        crd.model_schema(_Misspelt)


def test_default_factories_become_defaults() -> None:
    schema = crd.model_schema(_Factories)
    assert schema["properties"]["inner"]["default"] == {}
    assert schema["properties"]["inner"]["properties"]["level"]["default"] == 3
    assert schema["properties"]["tags"]["default"] == ["a", "b"]
    assert schema["properties"]["note"] == {"type": "string", "maxLength": 8}


def test_no_shared_nodes() -> None:
    # Shared dicts would be written as YAML anchors and aliases.
    seen: set[int] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict | list):
            assert id(value) not in seen
            seen.add(id(value))
            for child in value.values() if isinstance(value, dict) else value:
                walk(child)

    walk(crd.build_crd())
    assert "&id" not in crd.render_crd()


def _spec_models(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for info in model.model_fields.values():
        for child, _ in _models_in(info.annotation):
            found |= _spec_models(child)
    return found


def test_docs_list_every_spec_field() -> None:
    rows = {
        line.split("**")[1]: line
        for line in (ROOT / "docs" / "crd.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| **")
    }
    for model in _spec_models(ContactSyncSpec):
        row = rows[model.__name__]
        for name, info in model.model_fields.items():
            assert f"`{info.alias or name}`" in row, (model.__name__, name)
