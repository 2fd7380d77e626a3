"""Moto-proofing CloudFormation templates for the deploy tests, over ``local.template``
(which reads and evaluates template.yaml for the local runs and these tests alike).

- ``strip_for_moto`` removes the resource types moto's CloudFormation cannot create (and the
  custom resources, which moto would run in a Lambda container, i.e. Docker) and replaces every
  reference to them with an ARN-shaped placeholder, so the rest of the stack can be created.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from local.template import (
    _NO_VALUE,
    ACCOUNT,
    REGION,
    REPO,
    TEMPLATE,
    Evaluator,
    load_template,
    parameter_defaults,
)

__all__ = ["ACCOUNT", "REGION", "REPO", "TEMPLATE", "Evaluator", "iter_policy_statements",
           "load_template", "parameter_defaults", "placeholder", "resolve_optional_list_items",
           "strip_for_moto"]


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
