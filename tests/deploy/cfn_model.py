"""Reading, evaluating and moto-proofing CloudFormation templates for the deploy tests.

- ``load_template`` reads template.yaml with the short intrinsic tags (``!Ref``, ``!If`` ...)
  turned into their long JSON form, the way CloudFormation sees them.
- ``Evaluator`` resolves Conditions and ``Fn::If``/``Ref``-to-parameter for a parameter set, so
  a test can ask which resources exist and what a property resolves to on each path.
- ``strip_for_moto`` removes the resource types moto's CloudFormation cannot create (and the
  custom resources, which moto would run in a Lambda container, i.e. Docker) and replaces every
  reference to them with an ARN-shaped placeholder, so the rest of the stack can be created.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
ACCOUNT = "123456789012"
REGION = "us-east-1"

_SCALAR_TAGS = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    "!Base64": "Fn::Base64",
    "!ImportValue": "Fn::ImportValue",
    "!GetAZs": "Fn::GetAZs",
}
_SEQUENCE_TAGS = {
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!Join": "Fn::Join",
    "!Select": "Fn::Select",
    "!Split": "Fn::Split",
    "!FindInMap": "Fn::FindInMap",
    "!Cidr": "Fn::Cidr",
}


class _CfnLoader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> dict[str, Any]:
    if tag == "!GetAtt":
        if isinstance(node, yaml.ScalarNode):
            resource, _, attribute = str(loader.construct_scalar(node)).partition(".")
            return {"Fn::GetAtt": [resource, attribute]}
        return {"Fn::GetAtt": loader.construct_sequence(node, deep=True)}
    if tag == "!Sub":
        if isinstance(node, yaml.ScalarNode):
            return {"Fn::Sub": loader.construct_scalar(node)}
        return {"Fn::Sub": loader.construct_sequence(node, deep=True)}
    if tag in _SCALAR_TAGS:
        return {_SCALAR_TAGS[tag]: loader.construct_scalar(node)}  # type: ignore[arg-type]
    if tag in _SEQUENCE_TAGS:
        return {_SEQUENCE_TAGS[tag]: loader.construct_sequence(node, deep=True)}  # type: ignore[arg-type]
    raise yaml.constructor.ConstructorError(None, None, f"unknown tag {tag}", node.start_mark)


for _tag in [*_SCALAR_TAGS, *_SEQUENCE_TAGS, "!GetAtt", "!Sub"]:
    _CfnLoader.add_constructor(_tag, lambda loader, node, _t=_tag: _construct(loader, _t, node))


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}


class Evaluator:
    """Conditions and intrinsic values of a template for one parameter set."""

    def __init__(self, template: Mapping[str, Any], overrides: Mapping[str, str] | None = None):
        self.template = template
        self.params = parameter_defaults(template) | dict(overrides or {})
        self.param_types = {n: p["Type"] for n, p in template["Parameters"].items()}
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self._cond(self.template["Conditions"][name]))
        return self._conditions[name]

    def _cond(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Equals":
                left, right = (self.value(a) for a in arg)
                return left == right
            if key == "Fn::Not":
                return not self._cond(arg[0])
            if key == "Fn::And":
                return all(self._cond(a) for a in arg)
            if key == "Fn::Or":
                return any(self._cond(a) for a in arg)
        return self.value(node)

    def value(self, node: Any, refs: bool = True) -> Any:
        """Resolve Fn::If and (with ``refs``) parameters and pseudo parameters.

        Resource references are left as they are.
        """
        if isinstance(node, list):
            return [v for v in (self.value(x, refs) for x in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref" and arg == "AWS::NoValue":
                return _NO_VALUE
            if not refs and key in {"Ref", "Fn::Sub", "Fn::Join", "Fn::GetAtt"}:
                return node
            if key == "Ref" and arg in self.params:
                raw = self.params[arg]
                if self.param_types[arg] == "CommaDelimitedList":
                    return raw.split(",") if raw else [""]
                return raw
            if key == "Ref" and arg == "AWS::Region":
                return REGION
            if key == "Ref" and arg == "AWS::AccountId":
                return ACCOUNT
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.value(when_true if self.condition(name) else when_false, refs)
            if key == "Fn::Join":
                sep, items = arg
                items = self.value(items)
                if isinstance(items, list) and all(isinstance(i, str) for i in items):
                    return sep.join(items)
                return {"Fn::Join": [sep, items]}
            if key in {"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"}:
                return self._cond(node)
        out = {}
        for k, v in node.items():
            resolved = self.value(v, refs)
            if resolved is not _NO_VALUE:
                out[k] = resolved
        return out

    def resources(self) -> dict[str, Any]:
        """The resources that exist for this parameter set, with Fn::If resolved."""
        existing = {}
        for name, resource in self.template["Resources"].items():
            cond = resource.get("Condition")
            if cond is None or self.condition(cond):
                existing[name] = self.value(resource)
        return existing


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


def placeholder(logical_id: str, attribute: str | None = None) -> str:
    """ARN-shaped like most ARNs (service:region:account:type:id), so a template can take the
    id apart the way it does with the real ARN (Fn::Select 6 of Fn::Split ":")."""
    suffix = f"/{attribute}" if attribute else ""
    return f"arn:aws:placeholder:{REGION}:{ACCOUNT}:resource:{logical_id}{suffix}"


def _replace_refs(node: Any, stripped: set[str]) -> Any:
    if isinstance(node, list):
        return [_replace_refs(x, stripped) for x in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, arg),) = node.items()
        if key == "Ref" and arg in stripped:
            return placeholder(arg)
        if key == "Fn::GetAtt":
            resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            if resource in stripped:
                return placeholder(resource, attribute)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

            def sub(match: re.Match[str]) -> str:
                ref = match.group(1)
                resource, _, attribute = ref.partition(".")
                if resource in stripped and resource not in variables:
                    return placeholder(resource, attribute or None)
                return match.group(0)

            text = re.sub(r"\$\{([A-Za-z0-9:.]+)\}", sub, text)
            variables = _replace_refs(variables, stripped)
            return {"Fn::Sub": text if not variables else [text, variables]}
    return {k: _replace_refs(v, stripped) for k, v in node.items()}


def strip_for_moto(
    template: Mapping[str, Any], supported_types: set[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """A copy of ``template`` without the resources moto cannot create.

    Returns the new template and {logical id: type} of what was removed. Custom resources are
    always removed: moto would invoke their Lambda function, which needs Docker.
    """
    out = copy.deepcopy(dict(template))
    stripped = {
        name: res["Type"]
        for name, res in out["Resources"].items()
        if res["Type"] not in supported_types
        or res["Type"].startswith("Custom::")
        or res["Type"] == "AWS::CloudFormation::CustomResource"
    }
    for name in stripped:
        del out["Resources"][name]
    names = set(stripped)
    for name, res in out["Resources"].items():
        depends = res.get("DependsOn")
        if depends is not None:
            depends = [depends] if isinstance(depends, str) else depends
            kept = [d for d in depends if d not in names]
            if kept:
                res["DependsOn"] = kept
            else:
                del res["DependsOn"]
        out["Resources"][name] = _replace_refs(res, names)
    if "Outputs" in out:
        out["Outputs"] = _replace_refs(out["Outputs"], names)
    return out, stripped


def _is_optional_item(node: Any) -> bool:
    if not (isinstance(node, dict) and list(node) == ["Fn::If"]):
        return False
    branches = node["Fn::If"][1:]
    return any(b == {"Ref": "AWS::NoValue"} for b in branches)


def resolve_optional_list_items(node: Any, evaluator: Evaluator) -> Any:
    """Resolve ``Fn::If`` list items with an ``AWS::NoValue`` branch for one parameter set.

    moto's CloudFormation turns ``AWS::NoValue`` inside a list into ``null`` (CloudFormation
    drops the item), which breaks e.g. an IAM policy whose optional statements are ``Fn::If``.
    Only those list items are resolved here; every other condition is left to moto.
    """
    if isinstance(node, list):
        out = []
        for item in node:
            if _is_optional_item(item):
                resolved = evaluator.value(item)
                if resolved is _NO_VALUE:
                    continue
                item = resolved
            out.append(resolve_optional_list_items(item, evaluator))
        return out
    if isinstance(node, dict):
        return {k: resolve_optional_list_items(v, evaluator) for k, v in node.items()}
    return node


def iter_policy_statements(resources: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(resource name, statement) for every IAM statement of roles and managed policies."""
    found: list[tuple[str, dict[str, Any]]] = []

    def add(name: str, document: Any) -> None:
        statements = document.get("Statement", [])
        for st in statements if isinstance(statements, list) else [statements]:
            if isinstance(st, dict) and "Effect" in st:
                found.append((name, st))

    for name, res in resources.items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                add(name, policy["PolicyDocument"])
        elif res["Type"] in {"AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"}:
            add(name, props["PolicyDocument"])
    return found
