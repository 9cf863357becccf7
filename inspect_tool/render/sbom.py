"""SBOMs of ``dockscope packages``: SPDX 2.3 JSON and CycloneDX 1.5 JSON.

Both describe the image as the root (an SPDX package, a CycloneDX ``container`` component)
containing every package installed after the last layer read, each with its purl and the
licence its database records (as a comment in SPDX, where ``licenseDeclared`` must be a
valid SPDX expression: dockscope does not judge one, so it says ``NOASSERTION``; as a
licence name in CycloneDX). The layer that installed each package, its location and its
database are kept (SPDX ``sourceInfo``; CycloneDX ``dockscope:*`` properties).

The document's creation time is now, or ``SOURCE_DATE_EPOCH`` when set (reproducible
builds' convention); its identifiers are derived from the image ID and that time.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from inspect_tool import __version__
from inspect_tool.analyze.packages.purl import purl
from inspect_tool.analyze.packages.scan import LayerPackage, PackagesReport
from inspect_tool.model.image import Image

_NAMESPACE = uuid.UUID("6c9d3f50-35f4-4a37-9c7e-1f3c1d2e7a10")  # dockscope's, for uuid5


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    seconds = int(epoch) if epoch.isdigit() else int(time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _distro(report: PackagesReport) -> str:
    return report.os.id if report.os is not None else ""


def _origin(item: LayerPackage) -> str:
    package = item.package
    return f"installed by layer {item.layer}; recorded in {package.database}"


def spdx_document(image: Image, report: PackagesReport) -> dict[str, Any]:
    created = _created()
    identity = uuid.uuid5(_NAMESPACE, f"spdx {image.image_id} {report.upto} {created}")
    root = "SPDXRef-Image"
    packages: list[dict[str, Any]] = [
        {
            "SPDXID": root,
            "name": image.display_name,
            "versionInfo": str(image.image_id),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": image.image_id.hex}],
        }
    ]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": root,
        }
    ]
    distro = _distro(report)
    for number, item in enumerate(report.packages, 1):
        package = item.package
        spdx_id = f"SPDXRef-Package-{package.ecosystem.value}-{number}"
        entry: dict[str, Any] = {
            "SPDXID": spdx_id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": _origin(item),
            "primaryPackagePurpose": "LIBRARY",
        }
        if package.license:
            entry["licenseComments"] = f"as recorded by its database: {package.license}"
        if package.source and package.source != package.name:
            entry["comment"] = f"source package: {package.source}"
        locator = purl(package, distro=distro)
        if locator is not None:
            entry["externalRefs"] = [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": locator,
                }
            ]
        packages.append(entry)
        relationships.append(
            {"spdxElementId": root, "relationshipType": "CONTAINS", "relatedSpdxElement": spdx_id}
        )
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image.display_name} (after layer {report.upto})",
        "documentNamespace": f"urn:uuid:{identity}",
        "creationInfo": {"created": created, "creators": [f"Tool: dockscope-{__version__}"]},
        "documentDescribes": [root],
        "packages": packages,
        "relationships": relationships,
    }


def cyclonedx_document(image: Image, report: PackagesReport) -> dict[str, Any]:
    created = _created()
    serial = uuid.uuid5(_NAMESPACE, f"cyclonedx {image.image_id} {report.upto} {created}")
    distro = _distro(report)
    components: list[dict[str, Any]] = []
    if report.os is not None:
        components.append(
            {
                "type": "operating-system",
                "bom-ref": "os",
                "name": report.os.id,
                "version": report.os.version_id or None,
                "description": report.os.pretty_name or None,
            }
        )
    for number, item in enumerate(report.packages, 1):
        package = item.package
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": f"package-{number}",
            "name": package.name,
            "version": package.version,
        }
        locator = purl(package, distro=distro)
        if locator is not None:
            component["purl"] = locator
        if package.license:
            component["licenses"] = [{"license": {"name": package.license}}]
        properties = [
            ("dockscope:ecosystem", package.ecosystem.value),
            ("dockscope:layer", str(item.layer)),
            ("dockscope:location", package.location),
            ("dockscope:database", package.database),
        ]
        if package.arch:
            properties.append(("dockscope:arch", package.arch))
        if package.source:
            properties.append(("dockscope:source", package.source))
        component["properties"] = [{"name": k, "value": v} for k, v in properties]
        components.append(component)
    for component in components:  # CycloneDX wants absent, not null
        for key in [k for k, v in component.items() if v is None]:
            del component[key]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {
                "components": [{"type": "application", "name": "dockscope", "version": __version__}]
            },
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": image.display_name,
                "version": str(image.image_id),
                "hashes": [{"alg": "SHA-256", "content": image.image_id.hex}],
            },
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": [c["bom-ref"] for c in components]}],
    }
