"""docs/cost.md stays in step with the template and the code it takes its figures from."""

from __future__ import annotations

import re
from typing import Any

from bench import cost_inputs
from bench.cost_inputs import inner_statements, model_lines
from local.template import event_source_mapping
from shared.applier import WAITING_LIMIT
from shared.spec import load_spec
from tests.deploy.cfn_model import REPO, load_template, parameter_defaults

DOC = REPO / "docs/cost.md"
HOURS_PER_MONTH = 730
# The prices the doc computes with (its "Prices" table): us-east-1 list prices.
GLUE_DPU_HOUR = 0.44
RPU_HOUR = 0.375
# "Defining job properties for Spark jobs" (AWS Glue developer guide): G.025X is 0.25 DPU per
# worker, G.1X 1, G.2X 2, G.4X 4.
DPU_PER_WORKER = {"G.025X": 0.25, "G.1X": 1.0, "G.2X": 2.0, "G.4X": 4.0}


def doc_parameters(text: str) -> dict[str, str]:
    """The doc's "Template defaults used" table: parameter -> value."""
    section = text.split("Template defaults used", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|$", section, re.MULTILINE)
    assert rows, "the table of template defaults is missing from docs/cost.md"
    return dict(rows)


def test_template_defaults_in_the_doc_are_the_templates() -> None:
    defaults = parameter_defaults(load_template())
    for name, value in doc_parameters(DOC.read_text()).items():
        assert name in defaults, f"docs/cost.md quotes {name}, which the template does not have"
        assert value == defaults[name], \
            f"{name}: docs/cost.md says {value}, the template {defaults[name]}"


def test_the_quoted_parameters_are_what_the_resources_use() -> None:
    resources: dict[str, Any] = load_template()["Resources"]
    used = {
        "ConsumerMemorySize": resources["KinesisConsumerFunction"]["Properties"]["MemorySize"],
        "BatchSize": resources["KinesisEventSourceMapping"]["Properties"]["BatchSize"],
        "MaximumBatchingWindowSeconds":
            resources["KinesisEventSourceMapping"]["Properties"]["MaximumBatchingWindowInSeconds"],
        "GlueWorkerType": resources["GlueStreamingJob"]["Properties"]["WorkerType"],
        "GlueNumberOfWorkers": resources["GlueStreamingJob"]["Properties"]["NumberOfWorkers"],
        "RedshiftBaseCapacity": resources["RedshiftWorkgroup"]["Properties"]["BaseCapacity"],
        "KinesisStreamMode":
            resources["ChangeStream"]["Properties"]["StreamModeDetails"]["StreamMode"],
        "GlueWindowSize":
            resources["GlueStreamingJob"]["Properties"]["DefaultArguments"]["--WINDOW_SIZE"],
        "GlueMaxFetchRecordsPerShard": resources["GlueStreamingJob"]["Properties"][
            "DefaultArguments"]["--MAX_FETCH_RECORDS_PER_SHARD"],
        "ApplierBatchingWindowSeconds": resources["ApplierEventSourceMapping"]["Properties"][
            "MaximumBatchingWindowInSeconds"],
    }
    for name, value in used.items():
        assert value == {"Ref": name}, f"{name} no longer sets what docs/cost.md says it does"
    assert {"Ref": "LambdaArchitecture"} in \
        resources["KinesisConsumerFunction"]["Properties"].get("Architectures", []) or \
        load_template()["Globals"]["Function"]["Architectures"] == [{"Ref": "LambdaArchitecture"}]


def test_the_models_constants_are_the_template_defaults() -> None:
    defaults = parameter_defaults(load_template())
    assert int(defaults["ConsumerMemorySize"]) == cost_inputs.CONSUMER_MEMORY_MB
    assert int(defaults["BatchSize"]) == cost_inputs.BATCH_SIZE
    assert int(defaults["MaximumBatchingWindowSeconds"]) == cost_inputs.BATCHING_WINDOW_S
    assert DPU_PER_WORKER[defaults["GlueWorkerType"]] == cost_inputs.GLUE_WORKER_DPU
    assert int(defaults["GlueNumberOfWorkers"]) == cost_inputs.GLUE_WORKERS
    assert f"{cost_inputs.GLUE_WINDOW_S} seconds" == defaults["GlueWindowSize"]
    assert int(defaults["RedshiftBaseCapacity"]) == cost_inputs.RPU_BASE
    assert defaults["LambdaArchitecture"] == "arm64"  # the GB-second price the model uses
    assert defaults["KinesisStreamMode"] == "ON_DEMAND"
    assert int(defaults["ApplierBatchingWindowSeconds"]) == cost_inputs.APPLIER_WINDOW_S


def test_the_models_applier_is_the_templates() -> None:
    """The batch applier's memory, its SQS mapping (its batch size follows the window) and the
    messages it takes waiting behind each event, as the model and docs/cost.md take them."""
    resources: dict[str, Any] = load_template()["Resources"]
    applier = resources["BatchApplierFunction"]["Properties"]
    mapping = event_source_mapping("ApplierEventSourceMapping")
    gathering = event_source_mapping(
        "ApplierEventSourceMapping",
        {"ApplierBatchingWindowSeconds": str(cost_inputs.GATHERING_WINDOWS_S[1])})
    assert applier["MemorySize"] == cost_inputs.APPLIER_MEMORY_MB
    assert mapping["BatchSize"] == cost_inputs.APPLIER_BATCH_SIZE
    assert cost_inputs.Model(40).event_batch_size == cost_inputs.APPLIER_BATCH_SIZE
    assert cost_inputs.Model(40).applier_batch_size == mapping["BatchSize"] + WAITING_LIMIT
    assert gathering["BatchSize"] == cost_inputs.APPLIER_GATHERING_BATCH_SIZE
    assert cost_inputs.Model(40, applier_window_s=1).applier_batch_size == \
        gathering["BatchSize"] + WAITING_LIMIT
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == cost_inputs.APPLIER_CONCURRENCY
    text = " ".join(DOC.read_text().split())
    assert (f"`BatchApplierFunction` {applier['MemorySize']} MB; its SQS event source mapping "
            f"`BatchSize` {mapping['BatchSize']:,} messages ({gathering['BatchSize']:,} with a "
            f"window of 1 s or more), `MaximumConcurrency` "
            f"{mapping['ScalingConfig']['MaximumConcurrency']}; and in the function, up to "
            f"{WAITING_LIMIT:,} messages (`shared.applier.WAITING_LIMIT`) taken from the queue "
            f"behind each event: **up to {mapping['BatchSize'] + WAITING_LIMIT:,} landed batches "
            "per apply** with the default window") in text
    assert "falls behind at 10" not in text and "at most 10 landed batches" not in text
    assert f"{applier['MemorySize'] / 1024:g} GB arm64" in text


def test_the_docs_tables_are_the_models() -> None:
    """The crossover and sensitivity tables are what the model computes from the procedures
    as they are now: when this fails, run ``python -m bench.cost_inputs --model`` (and
    ``make bench-cost`` for the measured table) and update docs/cost.md."""
    spec = load_spec()
    text = DOC.read_text()
    for table in "\n".join(model_lines(inner_statements(spec, list(spec.tables)))).split("\n\n"):
        assert table in text, f"docs/cost.md is out of date; it should have:\n{table}"


def test_derived_figures_follow_the_template_defaults() -> None:
    text = DOC.read_text()
    defaults = parameter_defaults(load_template())
    dpu = DPU_PER_WORKER[defaults["GlueWorkerType"]] * int(defaults["GlueNumberOfWorkers"])
    glue_month = dpu * HOURS_PER_MONTH * GLUE_DPU_HOUR
    assert f"{dpu:g} DPU" in text
    assert f"${glue_month:,.2f} a month" in text
    rpu = int(defaults["RedshiftBaseCapacity"])
    assert f"{rpu} RPU" in text
    assert f"${rpu * HOURS_PER_MONTH * RPU_HOUR:,.0f} a month" in text
    memory_gb = int(defaults["ConsumerMemorySize"]) / 1024
    assert f"{memory_gb:g} GB" in text


def test_statements_inside_the_apply_call_are_the_procedures() -> None:
    spec = load_spec()
    count = inner_statements(spec, list(spec.tables))
    assert f"statements the CALL runs in the warehouse | {count} | {count} | {count} | {count} |" \
        in \
        DOC.read_text(), ("the apply procedures changed: run make bench-cost and update the "
                          "measured table of docs/cost.md")


def test_links_resolve() -> None:
    text = DOC.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)
    assert links
    for link in links:
        if link.startswith("http"):
            assert link.startswith("https://"), link
            continue
        path, _, anchor = link.partition("#")
        target = (DOC.parent / path).resolve()
        assert target.is_file(), f"docs/cost.md links to {link}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), re.MULTILINE)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
            assert anchor in slugs, f"docs/cost.md links to {link}: no such heading"
    assert "[docs/cost.md](docs/cost.md)" in (REPO / "README.md").read_text()


def test_the_docs_figures_are_the_models() -> None:
    """The figures the prose quotes from the model (``python -m bench.cost_inputs --model``)."""
    spec = load_spec()
    model = cost_inputs.Model(inner_statements(spec, list(spec.tables)))
    text = " ".join(DOC.read_text().split())
    day = dict(line.split("=") for line in cost_inputs.answer_lines(model.inner))
    lambda_total = float(day["model.day.lambda.total"])
    glue_total = float(day["model.day.glue.total"])
    ceiling = model.ceiling()
    lambda_ceiling = model.lambda_ceiling()
    crossover = model.crossover()
    times = "\N{MULTIPLICATION SIGN}"
    figures = [
        f"`d` = {cost_inputs.COPY_S:g} + {model.inner} {times} {cost_inputs.STATEMENT_S:g} = "
        f"**{model.apply_seconds(0):.1f} s per apply**, plus "
        f"{cost_inputs.CHANGE_S * 1000:g} ms per change",
        f"**{ceiling / 1e6:,.0f} million changes a day** (≈ {ceiling / cost_inputs.DAY:,.0f}/s)",
        f"**{lambda_ceiling / 1e6:,.0f} million changes a day** (≈ "
        f"{lambda_ceiling / cost_inputs.DAY:,.0f}/s), {lambda_ceiling / ceiling:.0%} of the "
        "warehouse's ceiling",
        f"`MaximumBatchingWindowSeconds` {cost_inputs.BATCHING_WINDOW_S} s, "
        f"`ApplierBatchingWindowSeconds` {cost_inputs.APPLIER_WINDOW_S} s). Each apply takes up "
        f"to **{model.applier_batch_size:,} landed batches** (the "
        f"{cost_inputs.APPLIER_BATCH_SIZE} of its SQS event and up to {WAITING_LIMIT:,} waiting "
        "behind them)",
        f"| Lambda, consumer ({day['model.day.lambda.consumer_invocations']} invocations of 1 GB "
        f"arm64, ≈ {day['model.day.lambda.consumer_seconds']} s each) | "
        f"${day['model.day.lambda.consumer']} | — |",
        f"| Lambda, batch applier ({day['model.day.lambda.applier_invocations']} invocations of "
        f"0.5 GB arm64, ≈ {day['model.day.lambda.applier_seconds']} s each) | "
        f"${day['model.day.lambda.applier']} | — |",
        f"| SQS: applier queue ({day['model.day.lambda.sqs_requests']} requests, the poller's "
        f"empty receives included) | ${day['model.day.lambda.sqs']} | — |",
        f"| S3 staging requests | ${day['model.day.lambda.s3']} | ${day['model.day.glue.s3']} |",
        f"**≈ ${lambda_total:.0f}** | **≈ ${glue_total:.0f}**",
    ]
    if crossover is None:
        figures.append("Glue is not cheaper anywhere below the Lambda path's ceiling")
    else:
        figures.append(f"Glue is cheaper from ≈ **{crossover / 1e6:,.1f} million changes a day**")
    for figure in figures:
        assert figure in text, f"docs/cost.md is out of date; it should say: {figure}"


def test_sqs_requests_of_lambdas_poller_are_priced() -> None:
    """The applier's queue is read by Lambda's poller, whose receives (empty ones included) are
    billed to the queue's owner ("Why are my Amazon SQS charges higher than expected?", AWS
    Knowledge Center): the model prices them and the doc cites where that is said."""
    day = cost_inputs.Model(40).lambda_day(0.5)  # one change every other day: the idle polls
    idle = cost_inputs.SQS_POLLERS * cost_inputs.DAY / cost_inputs.SQS_LONG_POLL_S
    assert day["sqs_requests"] >= idle
    assert "https://aws.amazon.com/premiumsupport/knowledge-center/sqs-high-charges/" in \
        DOC.read_text()


def test_the_applier_keeps_up_near_the_warehouses_ceiling() -> None:
    """With the defaults an apply takes everything waiting, up to its event's 10 and
    ``WAITING_LIMIT`` more: the Lambda path keeps up at 1 million changes a day (the answer is
    priced with what ships) and to within a tenth of the warehouse's own ceiling."""
    spec = load_spec()
    model = cost_inputs.Model(inner_statements(spec, list(spec.tables)))
    assert model.keeps_up(1e6)
    assert model.lambda_ceiling() > 0.9 * model.ceiling()


def test_an_apply_prices_the_applier_s_own_sqs_requests() -> None:
    """Per apply: the poller's receive and Lambda's delete of the event, one each per 10; the
    applier's short polls of those waiting, one per 10 and the empty one that ends them (none
    once it took ``WAITING_LIMIT``), and its DeleteMessageBatch per 10 applied."""
    model = cost_inputs.Model(40)
    assert model.sqs_per_apply(1) == 1 + 1 + 1
    assert model.sqs_per_apply(10) == 1 + 1 + 1
    assert model.sqs_per_apply(35) == 1 + 1 + (3 + 1) + 3
    assert model.sqs_per_apply(10 + WAITING_LIMIT) == 1 + 1 + 99 + 99
