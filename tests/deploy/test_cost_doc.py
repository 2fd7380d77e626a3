"""docs/cost.md stays in step with the template and the code it takes its figures from."""

from __future__ import annotations

import re
from typing import Any

from bench import cost_inputs
from bench.cost_inputs import inner_statements, model_lines
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
    assert f"statements the CALL runs in the warehouse | {count} | {count} | {count} |" in \
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
    seconds = model.batch_seconds(cost_inputs.BATCH_SIZE)
    invocation = seconds + cost_inputs.LAMBDA_OVERHEAD_S
    per_batch = (invocation * cost_inputs.CONSUMER_MEMORY_MB / 1024
                 * cost_inputs.P_GB_SECOND_ARM + cost_inputs.P_LAMBDA_REQUEST)
    crossover = model.crossover()
    day = dict(line.split("=") for line in cost_inputs.answer_lines(model.inner))
    lambda_total = float(day["model.day.lambda.total"])
    glue_total = float(day["model.day.glue.total"])
    times = "\N{MULTIPLICATION SIGN}"
    for figure in [
        f"= {cost_inputs.COPY_S:g} + {model.inner} {times} {cost_inputs.STATEMENT_S:g} = "
        f"**{seconds:.1f} s per batch**",
        f"≈ **{crossover / 1e6:.1f} million changes a day** "
        f"(≈ {crossover / cost_inputs.DAY:,.0f}/s)",
        f"**${1000 * per_batch:.2f} per million changes in batches of 1,000**",
        f"| Lambda ({day['model.day.lambda.invocations']} invocations of 1 GB arm64, "
        f"≈ {invocation:.1f} s each) | ${day['model.day.lambda.lambda']} | — |",
        f"**≈ ${lambda_total:.0f}** | **≈ ${glue_total:.0f}**",
    ]:
        assert figure in text, f"docs/cost.md is out of date; it should say: {figure}"
