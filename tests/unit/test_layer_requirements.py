"""layers/shared/layer_requirements.py: the SharedLayer carries the whole AWS SDK or the build
fails, since a part of it would be paired with the rest of the runtime's copy (/opt/python
comes first on sys.path: "Packaging your layer content", AWS Lambda Developer Guide)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.deploy_helpers import layer_module

layer = layer_module("layer_requirements")
SDK = {"boto3": "1.44.8", "botocore": "1.44.8", "s3transfer": "0.19.3", "jmespath": "1.1.0",
       "urllib3": "2.8.0", "python-dateutil": "2.9.0.post0", "six": "1.17.0"}


def install(target: Path, name: str, version: str) -> None:
    """What pip --target leaves of a distribution: its dist-info (METADATA names it)."""
    dist_info = target / f"{re.sub(r'[-.]', '_', name)}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                        f"Version: {version}\n")


def test_a_layer_with_the_whole_sdk_passes_and_loses_its_console_scripts(tmp_path: Path) -> None:
    for name, version in {**SDK, "msgspec": "0.23.0"}.items():
        install(tmp_path, name, version)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/jp.py").write_text("")
    assert layer.check_sdk(tmp_path) == dict(sorted(SDK.items()))
    layer.tidy(tmp_path)
    assert not (tmp_path / "bin").exists()


def test_botocore_without_boto3_fails_with_what_to_do(tmp_path: Path) -> None:
    """What aws-xray-sdk's dependency on botocore alone would bring."""
    for name in ("botocore", "jmespath", "urllib3", "python-dateutil", "six"):
        install(tmp_path, name, SDK[name])
    with pytest.raises(layer.IncompleteSdk, match=r"holds botocore, .* but not boto3, s3transfer: "
                                                  r"the functions would mix them with the "
                                                  r"runtime's SDK\. Keep boto3 and botocore"):
        layer.check_sdk(tmp_path)


def test_a_second_copy_of_a_distribution_fails(tmp_path: Path) -> None:
    for name, version in SDK.items():
        install(tmp_path, name, version)
    install(tmp_path, "urllib3", "1.26.20")
    with pytest.raises(layer.IncompleteSdk, match="more than one copy of urllib3"):
        layer.check_sdk(tmp_path)


def test_the_layer_requirements_are_pyprojects_with_the_lambda_extra(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["boto3==1.44.8", "msgspec"]\n'
                         '[project.optional-dependencies]\n'
                         'lambda = ["aws-lambda-powertools[tracer]>=3.0", "msgspec"]\n'
                         'dev = ["pytest"]\n')
    assert layer.layer_requirements(pyproject) == [
        "boto3==1.44.8", "msgspec", "aws-lambda-powertools[tracer]>=3.0"]
