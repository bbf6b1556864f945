"""The vendors' published API documents (provenance in ``PROVENANCE.md``) and what the tests
read from them: schemas, documented examples, and a check of every request a connector sends.

``zendesk-oas.yaml`` is Zendesk's Support API document (``oas.yaml``), ``intercom-2.16.yaml``
Intercom-OpenAPI's ``descriptions/2.16/api.intercom.io.yaml``. Freshdesk publishes none; its
documented parameters are a table in ``tests/connectors/test_freshdesk.py``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
ZENDESK = "zendesk-oas.yaml"
INTERCOM = "intercom-2.16.yaml"


class _Loader(yaml.CSafeLoader):
    """YAML 1.1 reads a bare ``=`` (Zendesk's trigger examples: ``change: =``) as the
    ``value`` tag; the document means the string."""


_Loader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


@lru_cache(maxsize=2)
def document(name: str) -> dict[str, Any]:
    """A kept document, parsed once per test session (about a second each)."""
    with (HERE / name).open(encoding="utf-8") as handle:
        found: dict[str, Any] = yaml.load(handle, Loader=_Loader)
    return found


def example(name: str, key: str) -> Any:
    """``components.examples[key].value`` of a kept document."""
    return document(name)["components"]["examples"][key]["value"]


def schema_errors(name: str, schema: str, instance: Any) -> list[str]:
    """Where ``instance`` breaks ``components.schemas[schema]`` of the document (OpenAPI 3.0
    schema dialect, every ``$ref`` resolved in the same document); empty when it is valid."""
    from openapi_schema_validator import OAS30Validator

    components = document(name)["components"]
    validator = OAS30Validator({"$ref": f"#/components/schemas/{schema}", "components": components})
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(instance)
    ]
