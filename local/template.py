"""template.yaml as CloudFormation reads it, for the local runs and the deploy tests.

- ``load_template`` reads it with the short intrinsic tags (``!Ref``, ``!If`` ...) turned into
  their long JSON form, the way CloudFormation sees them.
- ``Evaluator`` resolves Conditions and ``Fn::If``/``Ref``-to-parameter for a parameter set.
- ``event_source_mapping`` is what an event source mapping of the template is configured with
  for a parameter set; ``consumer_batching`` and ``applier_batching`` take the batching of the
  two mappings from it, so a local run batches the way the deployed stack does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
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
    if isinstance(node, yaml.ScalarNode):
        text = str(loader.construct_scalar(node))
        if tag == "!GetAtt":
            resource, _, attribute = text.partition(".")
            return {"Fn::GetAtt": [resource, attribute]}
        if tag == "!Sub":
            return {"Fn::Sub": text}
        if tag in _SCALAR_TAGS:
            return {_SCALAR_TAGS[tag]: text}
    if isinstance(node, yaml.SequenceNode):
        items = loader.construct_sequence(node, deep=True)
        if tag in ("!GetAtt", "!Sub"):
            return {"Fn::" + tag[1:]: items}
        if tag in _SEQUENCE_TAGS:
            return {_SEQUENCE_TAGS[tag]: items}
    raise yaml.constructor.ConstructorError(None, None, f"unknown tag {tag}", node.start_mark)


def _constructor(tag: str) -> Any:
    return lambda loader, node: _construct(loader, tag, node)


for _tag in [*_SCALAR_TAGS, *_SEQUENCE_TAGS, "!GetAtt", "!Sub"]:
    _CfnLoader.add_constructor(_tag, _constructor(_tag))


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    template: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506
    return template


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
                # CloudFormation compares strings: a Number parameter's "0" equals a literal 0.
                left, right = (_scalar_text(self.value(a)) for a in arg)
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


def _scalar_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float | str) else value


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


def event_source_mapping(logical_id: str, overrides: Mapping[str, str] | None = None,
                         template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The resolved ``Properties`` of the event source mapping ``logical_id`` for the
    template's parameter defaults and ``overrides``."""
    resources = Evaluator(template or load_template(), overrides).resources()
    resource = resources.get(logical_id)
    if resource is None or resource["Type"] != "AWS::Lambda::EventSourceMapping":
        raise KeyError(f"{logical_id} is no event source mapping of the template for these "
                       "parameters")
    properties: dict[str, Any] = resource["Properties"]
    return properties


@dataclass(frozen=True)
class MappingBatching:
    """How an event source mapping batches: records per invocation, the batching window, and
    how many invocations run at once (Kinesis: per shard, ParallelizationFactor; SQS: in all,
    ScalingConfig.MaximumConcurrency)."""

    batch_size: int
    batching_window_seconds: float
    concurrency: int


def consumer_batching(overrides: Mapping[str, str] | None = None) -> MappingBatching:
    """The Kinesis consumer's event source mapping (KinesisEventSourceMapping)."""
    properties = event_source_mapping("KinesisEventSourceMapping", overrides)
    return MappingBatching(int(properties["BatchSize"]),
                           float(properties["MaximumBatchingWindowInSeconds"]),
                           int(properties["ParallelizationFactor"]))


def consumer_reads_through_fan_out(overrides: Mapping[str, str] | None = None) -> bool:
    """Whether the Kinesis consumer's event source mapping reads through an enhanced fan-out
    consumer (its EventSourceArn is an ``AWS::Kinesis::StreamConsumer``'s ConsumerARN) rather
    than the stream itself (a standard iterator)."""
    template = load_template()
    source = event_source_mapping("KinesisEventSourceMapping", overrides, template)
    source_arn = source["EventSourceArn"]
    if not (isinstance(source_arn, dict) and "Fn::GetAtt" in source_arn):
        raise ValueError(f"KinesisEventSourceMapping's EventSourceArn is not an attribute of a "
                         f"template resource: {source_arn!r}")
    resource, attribute = source_arn["Fn::GetAtt"]
    kind = template["Resources"][resource]["Type"]
    if (kind, attribute) == ("AWS::Kinesis::StreamConsumer", "ConsumerARN"):
        return True
    if (kind, attribute) == ("AWS::Kinesis::Stream", "Arn"):
        return False
    raise ValueError(f"KinesisEventSourceMapping reads {resource}.{attribute} ({kind}), neither "
                     "a Kinesis stream nor a stream consumer")


def applier_batching(overrides: Mapping[str, str] | None = None) -> MappingBatching:
    """The batch applier's event source mapping (ApplierEventSourceMapping, Lambda path)."""
    properties = event_source_mapping("ApplierEventSourceMapping", overrides)
    return MappingBatching(int(properties["BatchSize"]),
                           float(properties["MaximumBatchingWindowInSeconds"]),
                           int(properties["ScalingConfig"]["MaximumConcurrency"]))
