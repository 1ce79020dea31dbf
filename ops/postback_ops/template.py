"""Read template.yaml as CloudFormation does: its short tags, parameters, conditions, resources
by type, a function's code. The local stack (postback_ops.local) builds its resources from what
this reads, and awsrules checks AWS's rules on it; neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short tags (`!Ref X` -> {"Ref": "X"})."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        template: dict[str, Any] = yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return template


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == resource_type}


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}


def with_parameters(template: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """The template with `values` as its parameters' defaults (as `sam deploy
    --parameter-overrides` gives them); a name the template does not declare is refused."""
    declared = template.get("Parameters", {})
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ValueError(f"template.yaml has no parameter {', '.join(unknown)} (it has {', '.join(sorted(declared))})")
    parameters = {
        name: {**spec, **({"Default": values[name]} if name in values else {})} for name, spec in declared.items()
    }
    return {**template, "Parameters": parameters}


def parse_parameter_overrides(text: str) -> dict[str, str]:
    """`Name=Value Name=Value` (sam's --parameter-overrides form) as a mapping."""
    pairs = {}
    for item in text.split():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"a parameter override is Name=Value, not {item!r}")
        pairs[name] = value
    return pairs


def condition_holds(template: Mapping[str, Any], name: str) -> bool:
    """A template condition at its parameters' defaults (Fn::Equals, Fn::Not, Fn::And, Fn::Or,
    Condition and Ref, as the template writes them)."""
    conditions = template.get("Conditions", {})

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return str(template_value(template, node))
        if isinstance(node, dict) and set(node) == {"Condition"}:
            return holds(conditions[node["Condition"]])
        return node

    def holds(node: Any) -> bool:
        ((function, args),) = node.items()
        if function == "Fn::Equals":
            return bool(str(value(args[0])) == str(value(args[1])))
        if function == "Fn::Not":
            return not holds(args[0])
        if function == "Fn::And":
            return all(holds(a) if "Condition" not in a else value(a) for a in args)
        if function == "Fn::Or":
            return any(holds(a) if "Condition" not in a else value(a) for a in args)
        if function == "Condition":
            return holds(conditions[args])
        raise ValueError(f"condition function {function} is not read locally")

    return holds(conditions[name])


def template_value(template: Mapping[str, Any], value: Any) -> Any:
    """A property as the template's parameter defaults make it: `!Ref Parameter` gives the
    parameter's default, a Number parameter's as an int or a float; anything else is returned."""
    if not (isinstance(value, dict) and set(value) == {"Ref"}):
        return value
    spec = template.get("Parameters", {}).get(value["Ref"])
    if spec is None:
        return value
    default = spec.get("Default")
    if spec.get("Type") == "Number":
        number = float(default)
        return int(number) if number.is_integer() else number
    return default


def function_code(function_logical_id: str, *, template: Mapping[str, Any] | None = None) -> tuple[Path, str, str]:
    """Where a function's code is and its handler: (code folder, module name, function name)."""
    template = template or load_template()
    props = template["Resources"][function_logical_id]["Properties"]
    module, _, attribute = props["Handler"].rpartition(".")
    return REPO_ROOT / props["CodeUri"], module, attribute
