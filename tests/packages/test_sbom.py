"""``packages --sbom``: SPDX 2.3 validated against its official JSON schema (the SPDX
project's ``spdx-schema.json`` of 2.3, as lib4sbom ships it) and checked by the SPDX project's
own parser and validator (spdx-tools); CycloneDX 1.5 validated against its official JSON schema
(shipped in cyclonedx-python-lib)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.analyze.packages.model import Ecosystem, Package
from inspect_tool.analyze.packages.purl import purl
from tests.packages.test_formats import jar
from tests.support.cli import invoke
from tests.support.images import layer_tar, write_image
from tests.support.paths import CORPUS

FIXTURES = CORPUS / "packages"
STATUS = (
    b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n"
    b"Architecture: amd64\nSource: glibc\n\n"
    b"Package: tzdata\nStatus: install ok installed\nVersion: 2024a-0+deb12u1\n"
    b"Architecture: all\n"
)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layers = [
        layer_tar(
            {
                "usr/lib/os-release": b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
                b'ID=debian\nVERSION_ID="12"\n',
                "var/lib/dpkg/status": STATUS,
            }
        ),
        layer_tar(
            {
                "usr/lib/python3/dist-packages/Foo_Bar-1.0.dist-info/METADATA": (
                    b"Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.0\nLicense: MIT\n"
                ),
                "app/node_modules/@types/node/package.json": (
                    b'{"name": "@types/node", "version": "20.1.0", "license": "MIT"}'
                ),
                "opt/app.jar": jar(
                    {
                        "META-INF/maven/org.example/app/pom.properties": (
                            b"groupId=org.example\nartifactId=app\nversion=2.1.0\n"
                        )
                    }
                ),
                "var/lib/rpm/Packages": (FIXTURES / "rpm-bdb-Packages-libuuid").read_bytes(),
            }
        ),
    ]
    return write_image(tmp_path_factory.mktemp("sbom") / "i.tar", layers)


def sbom(image: Path, kind: str) -> dict[str, Any]:
    result = invoke("packages", "--sbom", kind, image, env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert result.code == 0, result.err
    return result.json()  # type: ignore[no-any-return]


def cyclonedx_validator() -> Any:
    from importlib.resources import files

    from jsonschema import Draft7Validator
    from referencing import Registry, Resource

    directory = files("cyclonedx.schema") / "_res"
    registry: Registry[Any] = Registry()
    schemas = {}
    for name in ("bom-1.5", "spdx", "jsf-0.82"):
        schema = json.loads((directory / f"{name}.SNAPSHOT.schema.json").read_text())
        schemas[name] = schema
        resource = Resource.from_contents(schema)
        # the bom schema names them by these relative paths
        registry = registry.with_resource(
            f"http://cyclonedx.org/schema/{name}.SNAPSHOT.schema.json", resource
        ).with_resource(schema["$id"], resource)
    return Draft7Validator(
        schemas["bom-1.5"], registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER
    )


def test_cyclonedx_validates_against_the_official_schema(image: Path) -> None:
    document = sbom(image, "cyclonedx-json")
    validator = cyclonedx_validator()
    errors = [e.message for e in validator.iter_errors(document)]
    assert errors == []
    assert document["specVersion"] == "1.5"
    components = {c["name"]: c for c in document["components"]}
    assert components["debian"]["type"] == "operating-system"
    assert components["libc6"]["purl"] == (
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian"
    )
    assert components["Foo_Bar"]["purl"] == "pkg:pypi/foo-bar@1.0"
    assert components["@types/node"]["purl"] == "pkg:npm/%40types/node@20.1.0"
    assert components["org.example:app"]["purl"] == "pkg:maven/org.example/app@2.1.0"
    assert components["libuuid"]["purl"].startswith("pkg:rpm/debian/libuuid@2.32.1-42.el8_8")
    layer = {p["name"]: p["value"] for p in components["Foo_Bar"]["properties"]}
    assert layer["dockscope:layer"] == "1"
    assert len(document["components"]) == 7  # the OS and six packages
    # the validator bites: a broken document fails
    broken = dict(document, specVersion=1.5)
    assert list(validator.iter_errors(broken))


def test_spdx_validates_against_the_official_schema(image: Path) -> None:
    from importlib.resources import files

    from jsonschema import Draft7Validator

    schema = json.loads((files("lib4sbom") / "schemas" / "spdx" / "2.3-schema.json").read_text())
    assert schema["$id"] == "http://spdx.org/rdf/terms/2.3"
    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    document = sbom(image, "spdx-json")
    assert [e.message for e in validator.iter_errors(document)] == []
    # the schema bites: a package without its required download location fails
    broken = json.loads(json.dumps(document))
    del broken["packages"][1]["downloadLocation"]
    assert list(validator.iter_errors(broken))


def test_spdx_passes_the_spdx_tools_validator(image: Path, tmp_path: Path) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    document = sbom(image, "spdx-json")
    path = tmp_path / "image.spdx.json"
    path.write_text(json.dumps(document))
    parsed = parse_file(str(path))
    messages = validate_full_spdx_document(parsed, "SPDX-2.3")
    assert [m.validation_message for m in messages] == []
    assert document["spdxVersion"] == "SPDX-2.3"
    assert document["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    names = {p.name for p in parsed.packages}
    assert {"libc6", "tzdata", "Foo_Bar", "@types/node", "org.example:app", "libuuid"} <= names
    contains = [r for r in document["relationships"] if r["relationshipType"] == "CONTAINS"]
    assert len(contains) == 6
    # and the validator bites too: an SPDXID the spec forbids
    from spdx_tools.spdx.parser.error import SPDXParsingError

    document["packages"][1]["SPDXID"] = "not an id"
    path.write_text(json.dumps(document))
    with contextlib.suppress(SPDXParsingError):  # refused while parsing, or by the validator
        assert validate_full_spdx_document(parse_file(str(path)), "SPDX-2.3") != []


def test_sbom_usage_errors(image: Path) -> None:
    assert invoke("packages", "--sbom", "xml", image).code == 2
    assert invoke("packages", "--sbom", "spdx-json", "--json", image).code == 2


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        (
            Package(Ecosystem.RPM, "bash", "1:5.1-2.el9", "/", "/", arch="x86_64"),
            "pkg:rpm/rhel/bash@5.1-2.el9?arch=x86_64&distro=rhel&epoch=1",
        ),
        (
            Package(Ecosystem.GO, "github.com/a/b", "v1.2.3", "/", "/"),
            "pkg:golang/github.com/a/b@v1.2.3",
        ),
        (
            Package(Ecosystem.APK, "musl", "1.2.4-r2", "/", "/", arch="x86_64"),
            "pkg:apk/rhel/musl@1.2.4-r2?arch=x86_64&distro=rhel",
        ),
        (Package(Ecosystem.JAVA, "lib", "1", "/", "/"), None),
    ],
)
def test_purls(package: Package, expected: str | None) -> None:
    assert purl(package, distro="rhel") == expected
