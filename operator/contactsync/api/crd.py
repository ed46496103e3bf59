"""The ContactSync CustomResourceDefinition, generated from the pydantic models.

    PYTHONPATH=operator python -m contactsync.api.crd > crds/contactsync.dev_contactsyncs.yaml

The models in `spec.py` and `status.py` are the one source of truth; this
module only translates their JSON Schema into a *structural* OpenAPI v3
schema, the subset the API server accepts for a CRD:

- `$ref`/`$defs` are inlined: a structural schema is one self-contained tree.
- `X | None` (`anyOf: [X, {type: null}]`) becomes plain optional `X`, not
  `nullable`: the server prunes an explicit `null` of a non-nullable field
  before validation, which means the same as pydantic's `None`, and CEL's
  `has()` then answers "is it set" without a second check for null.
- `const` becomes a one-value `enum`; `title` is dropped.
- `additionalProperties: false` is dropped, because a structural schema may not
  combine it with `properties`. Unknown fields are not stored either way: the
  server prunes them, and with `fieldValidation=Strict` (kubectl's default)
  rejects the request that carries them.
- Defaults are kept, including those of default factories, so the stored
  object shows every setting the engine will use (`kubectl get -o yaml`) and
  immutability rules always have an old value to compare with.
- Anything else in the JSON Schema is an error rather than silently dropped,
  so a new pydantic constraint cannot go missing from the CRD.
"""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Mapping
from typing import Any, cast

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from .spec import API_VERSION, KIND, ContactSync, ContactSyncSpec, ObjectMeta
from .status import ContactSyncStatus

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "contactsyncs"
SINGULAR = "contactsync"
NAME = f"{PLURAL}.{GROUP}"

JsonSchema = dict[str, Any]

# Output order, for a readable file: what a node is, then its limits, then children.
_ORDER = (
    "type",
    "description",
    "default",
    "enum",
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "maxProperties",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "items",
    "additionalProperties",
    "required",
    "properties",
    "x-kubernetes-validations",
)
# Keywords copied as they are: the same meaning in JSON Schema and in the OpenAPI v3
# subset Kubernetes validates with. The others are rebuilt node by node.
_COPIED = frozenset(_ORDER) - {
    "default",
    "items",
    "additionalProperties",
    "properties",
    "x-kubernetes-validations",
}
_RULE_ORDER = ("rule", "messageExpression", "message", "fieldPath", "reason")
# Strings in these formats have a fixed upper length. The server estimates the
# cost of CEL rules from maxLength, so every string gets one.
_FORMAT_MAX_LENGTH = {"date-time": 64, "uuid": 36}


class _KubernetesJsonSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema, with the values of default factories as defaults."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return cast("Any", factory)()
        return super().get_default_value(schema)

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, BaseModel):
            # The server defaults nested fields itself, so an object default only
            # needs what differs from them (usually nothing: `{}`).
            return dft.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return super().encode_default(dft)


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> JsonSchema:
    """`override` (a field's own keywords) over `base` (its type's); rules add up."""
    merged = {**base, **override}
    rules = [
        *base.get("x-kubernetes-validations", []),
        *override.get("x-kubernetes-validations", []),
    ]
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> JsonSchema:
    """Inline `$ref`s and unwrap `X | None` until the node has a concrete type."""
    while True:
        rest = {key: value for key, value in node.items() if key not in ("$ref", "anyOf")}
        if "$ref" in node:
            node = _merge(defs[node["$ref"].removeprefix("#/$defs/")], rest)
        elif "anyOf" in node:
            branches = [branch for branch in node["anyOf"] if branch != {"type": "null"}]
            if len(branches) != 1 or len(node["anyOf"]) != 2:
                raise ValueError(f"only `X | None` unions have a structural form: {node}")
            node = _merge(branches[0], rest)
        else:
            return dict(node)


def _rule(rule: Mapping[str, Any]) -> JsonSchema:
    if unknown := rule.keys() - set(_RULE_ORDER):
        raise ValueError(f"unknown keys in CEL rule {rule}: {sorted(unknown)}")
    return {key: rule[key] for key in _RULE_ORDER if key in rule}


def _structural(node: Mapping[str, Any], defs: Mapping[str, Any]) -> JsonSchema:
    out: JsonSchema = {}
    for key, value in _resolve(node, defs).items():
        if key == "title":
            continue
        if key == "additionalProperties" and value is False:
            continue  # see the module docstring: pruning does this job
        if key == "properties":
            out[key] = {name: _structural(child, defs) for name, child in value.items()}
        elif key in ("items", "additionalProperties"):  # a list's items, a map's values
            out[key] = _structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key == "default":
            if value is not None:  # `None` means "unset", which needs no default
                out[key] = copy.deepcopy(value)
        elif key == "x-kubernetes-validations":
            out[key] = [_rule(rule) for rule in value]
        elif key in _COPIED:
            out[key] = copy.deepcopy(value)  # no shared nodes: they would become YAML aliases
        else:
            raise ValueError(f"no structural equivalent for {key}={value!r}")
    if out.get("type") == "string" and "maxLength" not in out:
        if "enum" in out:
            out["maxLength"] = max(len(choice) for choice in out["enum"])
        elif out.get("format") in _FORMAT_MAX_LENGTH:
            out["maxLength"] = _FORMAT_MAX_LENGTH[out["format"]]
    return {key: out[key] for key in _ORDER if key in out}


def model_schema(model: type[BaseModel]) -> JsonSchema:
    """The structural OpenAPI v3 schema of one pydantic model."""
    schema = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_KubernetesJsonSchema
    )
    defs = schema.pop("$defs", {})
    return _structural(schema, defs)


def _description(model: type[BaseModel]) -> str:
    return inspect.cleandoc(model.__doc__ or "")


def _object_schema() -> JsonSchema:
    """The whole object: Kubernetes' envelope around the generated spec and status."""
    return {
        "type": "object",
        "description": _description(ContactSync),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "Versioned schema of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            # The server allows constraints on metadata.name only. The operator
            # derives other names from it, and pydantic's ObjectMeta holds it to
            # a DNS label; the server agrees instead of allowing 253 characters.
            "metadata": {
                "type": "object",
                "properties": {"name": model_schema(ObjectMeta)["properties"]["name"]},
            },
            "spec": model_schema(ContactSyncSpec),
            "status": model_schema(ContactSyncStatus),
        },
    }


def _ready(field: str) -> str:
    return f'.status.conditions[?(@.type=="Ready")].{field}'


_PRINTER_COLUMNS: list[JsonSchema] = [
    {"name": "Ready", "type": "string", "jsonPath": _ready("status")},
    {"name": "Reason", "type": "string", "jsonPath": _ready("reason")},
    {"name": "Last Sync", "type": "date", "jsonPath": ".status.lastSync.finishedAt"},
    # A string, not a date: kubectl prints a future date as "<invalid>".
    {"name": "Next Run", "type": "string", "jsonPath": ".status.nextRunAt"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "jsonPath": _ready("message"), "priority": 1},
    {
        "name": "Work Pool",
        "type": "string",
        "jsonPath": ".status.prefect.workPoolName",
        "priority": 1,
    },
]


def build_crd() -> JsonSchema:
    """The CustomResourceDefinition, as a plain dict ready for YAML or the API."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": ["csync"],
                "categories": ["contactsync"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": _object_schema()},
                }
            ],
        },
    }


_HEADER = """\
# Generated from operator/contactsync/api/{spec,status}.py; do not edit. Regenerate:
#   PYTHONPATH=operator python -m contactsync.api.crd > crds/contactsync.dev_contactsyncs.yaml
"""


def render_crd() -> str:
    """The CRD as the YAML file committed under crds/."""
    # A wide line keeps every CEL rule and pattern on one line.
    body = yaml.safe_dump(build_crd(), sort_keys=False, width=1000, allow_unicode=True)
    return _HEADER + body


def main() -> None:
    sys.stdout.write(render_crd())


if __name__ == "__main__":
    main()
