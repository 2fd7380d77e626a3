"""local.template: template.yaml as CloudFormation evaluates it, and the batching of the two event
source mappings the local runs take from it."""

from __future__ import annotations

from typing import Any

import pytest

from local.template import (
    Evaluator,
    MappingBatching,
    applier_batching,
    consumer_batching,
    event_source_mapping,
    load_template,
)


def _template(parameters: dict[str, Any], conditions: dict[str, Any]) -> dict[str, Any]:
    return {"Parameters": parameters, "Conditions": conditions, "Resources": {}}


def test_equals_compares_a_number_parameter_with_a_literal_as_strings() -> None:
    """"Condition functions" (AWS CloudFormation User Guide): Fn::Equals compares two values;
    a Number parameter reaches it as a string ("0"), a YAML literal 0 as an int, and
    CloudFormation finds them equal."""
    template = _template(
        {"Window": {"Type": "Number", "Default": 0}},
        {"Zero": {"Fn::Equals": [{"Ref": "Window"}, 0]},
         "Gathers": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Window"}, 0]}]}})
    default = Evaluator(template)
    assert (default.condition("Zero"), default.condition("Gathers")) == (True, False)
    raised = Evaluator(template, {"Window": "2"})
    assert (raised.condition("Zero"), raised.condition("Gathers")) == (False, True)


def test_equals_compares_booleans_as_cloudformation_writes_them() -> None:
    template = _template(
        {"Flag": {"Type": "String", "Default": "true", "AllowedValues": ["true", "false"]}},
        {"BareTrue": {"Fn::Equals": [{"Ref": "Flag"}, True]},
         "QuotedTrue": {"Fn::Equals": [{"Ref": "Flag"}, "true"]},
         "BareFalse": {"Fn::Equals": [{"Ref": "Flag"}, False]}})
    on = Evaluator(template)
    assert [on.condition(n) for n in ("BareTrue", "QuotedTrue", "BareFalse")] == \
        [True, True, False]
    off = Evaluator(template, {"Flag": "false"})
    assert [off.condition(n) for n in ("BareTrue", "QuotedTrue", "BareFalse")] == \
        [False, False, True]


def test_equals_of_different_strings_is_false() -> None:
    template = _template({"Window": {"Type": "Number", "Default": 0}},
                         {"Ten": {"Fn::Equals": [{"Ref": "Window"}, 10]},
                          "Padded": {"Fn::Equals": [{"Ref": "Window"}, "00"]}})
    evaluator = Evaluator(template)
    assert (evaluator.condition("Ten"), evaluator.condition("Padded")) == (False, False)


def test_the_defaults_batch_for_the_lowest_latency() -> None:
    """template.yaml's defaults: the consumer invokes per poll (window 0); the applier takes up
    to 10 messages at once, the most an SQS mapping without a window may take ("Lambda
    parameters for Amazon SQS event source mappings", AWS Lambda Developer Guide)."""
    defaults = {n: str(p.get("Default", "")) for n, p in load_template()["Parameters"].items()}
    assert consumer_batching() == MappingBatching(
        int(defaults["BatchSize"]), 0.0, int(defaults["ParallelizationFactor"]))
    assert applier_batching() == MappingBatching(10, 0.0, 2)


def test_overrides_reach_both_mappings() -> None:
    assert applier_batching({"ApplierBatchingWindowSeconds": "2"}) == \
        MappingBatching(10_000, 2.0, 2)
    assert applier_batching({"ApplierBatchingWindowSeconds": "1"}).batch_size == 10_000
    assert consumer_batching({"MaximumBatchingWindowSeconds": "30", "BatchSize": "500",
                              "ParallelizationFactor": "4"}) == MappingBatching(500, 30.0, 4)


def test_every_batch_size_above_ten_has_a_window_of_a_second() -> None:
    """Lambda rejects an SQS mapping with BatchSize above 10 and a window below 1 s."""
    for seconds in (0, 1, 2, 30, 300):
        batching = applier_batching({"ApplierBatchingWindowSeconds": str(seconds)})
        assert batching.batch_size <= 10 or batching.batching_window_seconds >= 1, seconds


def test_the_applier_mapping_exists_only_on_the_lambda_path() -> None:
    assert event_source_mapping("ApplierEventSourceMapping",
                                {"ProcessingPath": "Lambda"})["BatchSize"] == 10
    with pytest.raises(KeyError, match="ApplierEventSourceMapping is no event source mapping"):
        event_source_mapping("ApplierEventSourceMapping", {"ProcessingPath": "Glue"})


@pytest.mark.parametrize("logical_id", ["ApplierQueue", "BatchApplierFunction", "NoSuchThing"])
def test_event_source_mapping_of_anything_else_raises_key_error(logical_id: str) -> None:
    with pytest.raises(KeyError, match=f"{logical_id} is no event source mapping"):
        event_source_mapping(logical_id)
