"""A project's label schema taken from a corpus as it is: its annotation.conf and what its data uses.

Real brat corpora are looser than their conf: relation arguments name entity types the conf never
declares (brat accepts that), and the .ann files use labels, attributes and values it does not list.
``schema_for_corpus`` builds a schema that holds all of it and ``extend_schema`` widens an existing
one; both say, one line per addition, what they added, so that the lead sees what the data brought.
"""

from collections.abc import Iterable, Mapping
from copy import deepcopy
from typing import Any

from app.domain.brat import BINARY_VALUE, label_schema_from_conf
from app.domain.label_schema import RESERVED_HOTKEYS, distinct_colour
from app.domain.uploads import ImportedDocument, labels_of

EMPTY_SCHEMA: dict[str, Any] = {"entity_types": [], "relation_types": [], "span_attributes": []}


def _colour(taken: set[str]) -> str:
    """A palette colour no type has yet; past the palette, further hues by the golden angle."""
    return distinct_colour(taken)


def _hotkey(name: str, taken: set[str]) -> str | None:
    for char in name.lower():
        if "a" <= char <= "z" and char not in taken and char not in RESERVED_HOTKEYS:
            return char
    return None


class _Schema:
    """A schema dict being widened, and the additions made to it."""

    def __init__(self, schema: Mapping[str, Any]):
        self.data = deepcopy(dict(schema))
        for key in ("entity_types", "relation_types", "span_attributes"):
            self.data.setdefault(key, [])
        self.additions: list[str] = []

    @property
    def entity_names(self) -> list[str]:
        return [e["name"] for e in self.data["entity_types"]]

    def add_entity_type(self, name: str, why: str) -> None:
        if name in self.entity_names:
            return
        entities = self.data["entity_types"]
        colours = {e.get("color") for e in entities}
        hotkeys = {e.get("hotkey") for e in entities if e.get("hotkey")}
        entity: dict[str, Any] = {"name": name, "color": _colour(colours)}
        if hotkey := _hotkey(name, hotkeys):
            entity["hotkey"] = hotkey
        entities.append(entity)
        self.additions.append(f"entity type '{name}' ({why})")

    def declare_argument_types(self, why: str) -> None:
        """Entity types that relations and attributes name but the schema does not declare."""
        for relation in self.data["relation_types"]:
            for name in [*relation["head_types"], *relation["tail_types"]]:
                self.add_entity_type(name, f"{why}: an argument of relation '{relation['name']}'")
        for attribute in self.data["span_attributes"]:
            for name in attribute.get("applies_to") or []:
                self.add_entity_type(name, f"{why}: a type attribute '{attribute['name']}' applies to")

    def add_conf(self, conf: Mapping[str, Any]) -> None:
        """What an annotation.conf declares that the schema lacks (types, relations, attributes, values)."""
        declared = label_schema_from_conf(conf)
        for entity in declared["entity_types"]:
            self.add_entity_type(entity["name"], "declared in annotation.conf")
        relations = {r["name"]: r for r in self.data["relation_types"]}
        for relation in declared["relation_types"]:
            if relation["name"] not in relations:
                self.data["relation_types"].append(deepcopy(relation))
                self.additions.append(f"relation type '{relation['name']}' (declared in annotation.conf)")
        attributes = {a["name"]: a for a in self.data["span_attributes"]}
        for attribute in declared["span_attributes"]:
            found = attributes.get(attribute["name"])
            if found is None:
                self.data["span_attributes"].append(deepcopy(attribute))
                self.additions.append(f"attribute '{attribute['name']}' (declared in annotation.conf)")
                continue
            for value in attribute["values"]:
                if value not in found["values"]:
                    found["values"].append(value)
                    self.additions.append(
                        f"value '{value}' of attribute '{attribute['name']}' (declared in annotation.conf)"
                    )

    def add_data(self, documents: Iterable[ImportedDocument]) -> None:
        used = labels_of(list(documents))
        for label in used["entities"]:
            self.add_entity_type(label, "used by the data")
        relations = {r["name"]: r for r in self.data["relation_types"]}
        for name, sides in used["relations"].items():
            if not sides["head_types"] or not sides["tail_types"]:
                continue  # arguments that are events: the relation stays as its lines
            relation = relations.get(name)
            if relation is None:
                relation = {"name": name, "head_types": [], "tail_types": []}
                self.data["relation_types"].append(relation)
                relations[name] = relation
                self.additions.append(
                    f"relation type '{name}' ({'|'.join(sides['head_types'])} -> "
                    f"{'|'.join(sides['tail_types'])}, used by the data)"
                )
                relation["head_types"] = list(sides["head_types"])
                relation["tail_types"] = list(sides["tail_types"])
                continue
            for side, word in (("head_types", "head"), ("tail_types", "tail")):
                for label in sides[side]:
                    if label not in relation[side]:
                        relation[side].append(label)
                        self.additions.append(
                            f"'{label}' as a {word} of relation '{name}' (used by the data)"
                        )
        attributes = {a["name"]: a for a in self.data["span_attributes"]}
        for name, spec in used["attributes"].items():
            attribute = attributes.get(name)
            if attribute is None:
                values = list(spec["values"]) or [BINARY_VALUE]
                self.data["span_attributes"].append(
                    {"name": name, "values": values, "applies_to": list(spec["applies_to"])}
                )
                self.additions.append(
                    f"attribute '{name}' (values {', '.join(values)}; on {', '.join(spec['applies_to'])}; "
                    "used by the data)"
                )
                continue
            for value in spec["values"]:
                binary = value == BINARY_VALUE and len(attribute["values"]) == 1
                if value not in attribute["values"] and not binary:
                    attribute["values"].append(value)
                    self.additions.append(f"value '{value}' of attribute '{name}' (used by the data)")
            if attribute.get("applies_to"):  # empty: every type already
                for label in spec["applies_to"]:
                    if label not in attribute["applies_to"]:
                        attribute["applies_to"].append(label)
                        self.additions.append(f"attribute '{name}' on '{label}' (used by the data)")


def schema_for_corpus(
    conf: Mapping[str, Any] | None, documents: Iterable[ImportedDocument]
) -> tuple[dict[str, Any], list[str]]:
    """The schema of a new project: its annotation.conf (parsed), if any, widened to hold the data.

    No conf and no annotation: an empty schema that the lead fills in. The additions list what the
    conf did not declare.
    """
    schema = _Schema(label_schema_from_conf(conf) if conf else EMPTY_SCHEMA)
    schema.declare_argument_types("not declared in annotation.conf")
    schema.add_data(documents)
    return schema.data, schema.additions


def extend_schema(
    current: Mapping[str, Any], documents: Iterable[ImportedDocument], conf: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """An existing project's schema widened to hold the data (and what an upload's annotation.conf
    declares, when it has one), and what was added."""
    schema = _Schema(current)
    if conf:
        schema.add_conf(conf)
        schema.declare_argument_types("not declared in annotation.conf")
    schema.add_data(documents)
    return schema.data, schema.additions
