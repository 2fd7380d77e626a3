"""`sam build` of a copy of the application, without Docker, for the python3.12/arm64 runtime.

The build runs in a temporary copy of template + pyproject + functions + shared + layers +
glue_job (tests/deploy/conftest.py). Handler files that do not exist yet in the repository are
replaced by stand-ins in that copy only. The SharedLayer is built by layers/shared/Makefile:
the shared package plus the runtime dependencies of pyproject.toml (and the `lambda` extra) as
manylinux aarch64 / CPython 3.12 wheels.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import yaml

from tests.deploy.deploy_helpers import AppCopy, Build, layer_requirements


def _built_template(build: Build) -> dict:  # type: ignore[type-arg]
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((build.build_dir / "template.yaml").read_text(), Loader=Loader)  # noqa: S506


def test_sam_build_succeeds(built_app: Build) -> None:
    assert "Build Succeeded" in built_app.output
    assert "python3.12" in built_app.output  # the build found a python3.12 for the runtime check


def test_functions_are_built(built_app: Build, app_copy: AppCopy) -> None:
    for function, source in [
        ("KinesisConsumerFunction", "functions/kinesis_consumer"),
        ("SchemaMigratorFunction", "functions/schema_migrator"),
        ("BatchApplierFunction", "functions/batch_applier"),
    ]:
        built = built_app.build_dir / function
        assert (built / "app.py").read_text() == (app_copy.root / source / "app.py").read_text()
        # Dependencies come from the layer, not from each function's package.
        assert not list(built.glob("*.dist-info"))
        assert not (built / "shared").exists()


def test_shared_layer_contents(built_app: Build, app_copy: AppCopy) -> None:
    python = built_app.build_dir / "SharedLayer/python"
    shared = python / "shared"
    assert (shared / "__init__.py").exists()
    source_files = {
        p.relative_to(app_copy.root / "shared")
        for p in (app_copy.root / "shared").rglob("*")
        if p.is_file()
    }
    built_files = {p.relative_to(shared) for p in shared.rglob("*") if p.is_file()}
    assert built_files == source_files
    assert Path("specs/sports_ticketing.toml") in built_files
    assert not list(shared.rglob("__pycache__"))
    # Third-party packages for the Lambda platform: CPython 3.12 on arm64 (aarch64).
    installed = {p.name.split("-")[0].lower() for p in python.glob("*.dist-info")}
    for requirement in layer_requirements(app_copy.root / "pyproject.toml"):
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("-", "_")
        assert name in installed, requirement
    extensions = list(python.rglob("*.so"))
    assert extensions  # msgspec's C core
    for ext in extensions:
        assert "aarch64" in ext.name and ("cpython-312" in ext.name or "abi3" in ext.name), ext
    assert (python / "aws_lambda_powertools/__init__.py").exists()
    # The AWS SDK too: the layer's, not the runtime's, is what the functions import.
    assert (python / "boto3/__init__.py").exists() and (python / "botocore/__init__.py").exists()


def test_built_template_points_at_artifacts(built_app: Build, app_copy: AppCopy) -> None:
    resources = _built_template(built_app)["Resources"]
    assert resources["SharedLayer"]["Properties"]["ContentUri"] == "SharedLayer"
    assert (
        resources["KinesisConsumerFunction"]["Properties"]["CodeUri"] == "KinesisConsumerFunction"
    )
    assert resources["SchemaMigratorFunction"]["Properties"]["CodeUri"] == "SchemaMigratorFunction"
    assert resources["BatchApplierFunction"]["Properties"]["CodeUri"] == "BatchApplierFunction"
    # sam build leaves the Glue script in place and rewrites its path relative to the build dir;
    # `sam package` uploads it (Command.ScriptLocation is a packageable property).
    script = resources["GlueStreamingJob"]["Properties"]["Command"]["ScriptLocation"]
    assert (built_app.build_dir / script).resolve() == (
        app_copy.root / "glue_job/cdc_streaming_job.py"
    ).resolve()


def test_layer_zip_is_what_lambda_and_glue_get(built_app: Build, tmp_path: Path) -> None:
    # The layer directory zipped like `sam package` does: /opt/python/shared/... at run time.
    archive = tmp_path / "layer.zip"
    root = built_app.build_dir / "SharedLayer"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in root.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(root))
    names = zipfile.ZipFile(archive).namelist()
    assert "python/shared/__init__.py" in names
    assert "python/shared/specs/sports_ticketing.toml" in names
