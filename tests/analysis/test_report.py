"""dockscope report: one self-contained HTML file, loaded in headless Chromium.

Each page is opened from disk with the DevTools protocol watching (tests/support/browser.py): no
request may leave the file, no dialog may open (an ``alert`` that ran), nothing may be
logged, and the key sections must be laid out visibly. Screenshots are kept in
tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.render.html import inline_svg
from tests.support.browser import Chromium, Page
from tests.support.cli import dockscope, invoke, ok
from tests.support.images import write_image
from tests.support.paths import CORPUS, SAMPLES, TESTS
from tests.support.tar_entries import build_layer, dir_entry, file_entry

ARTIFACTS = TESTS / "artifacts"

# Key elements of a report with images 1..n: (id, what must be inside for it to count)
KEY_IDS = ["verify", "graph"]
IMAGE_IDS = [
    "summary",
    "layers",
    "efficiency",
    "types",
    "packages",
    "secrets",
    "history",
    "dockerfile",
    "findings",
]

VISIBILITY = """
(() => {
  const seen = (el) => {
    if (!el) return "missing";
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    const shown = box.width > 0 && box.height > 0 && style.display !== "none"
      && style.visibility === "visible" && Number(style.opacity) > 0;
    return shown ? "visible" : "hidden";
  };
  return Object.fromEntries(IDS.map((id) => [id, seen(document.getElementById(id))]));
})()
"""

FACTS = """
(() => {
  const svg = document.querySelector("#graph svg");
  const bar = document.querySelector("[id^=layers-] .bar > span");
  const attrs = [...document.querySelectorAll("*")].flatMap((el) => [...el.attributes]);
  return {
    title: document.title,
    text: document.body.innerText,
    scripts: document.querySelectorAll("script").length,
    styles: document.querySelectorAll("style").length,
    frames: document.querySelectorAll("iframe, object, embed, img, link, base").length,
    handlers: attrs.filter((a) => a.name.startsWith("on")).map((a) => a.name),
    svgWidth: svg ? svg.getBoundingClientRect().width : 0,
    svgText: svg ? svg.textContent : "",
    barWidth: bar ? bar.getBoundingClientRect().width : 0,
    headerColour: getComputedStyle(document.querySelector("header")).backgroundColor,
    csp: document.querySelector("meta[http-equiv=Content-Security-Policy]")?.content,
  };
})()
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium() as chromium:
        yield chromium


def write_report(out: Path, *args: str | Path, code: int = 0) -> str:
    result = invoke("report", *(str(a) for a in args), "-o", str(out))
    assert result.code == code, result.output
    return out.read_text(encoding="utf-8")


def load(browser: Chromium, path: Path, shot: str | None = None) -> tuple[Page, dict[str, Any]]:
    page, session = browser.open_page(path)
    facts: dict[str, Any] = browser.evaluate(session, FACTS)
    images = len(re.findall(r'<section class="image" id="image-\d+">', path.read_text()))
    ids = KEY_IDS + [f"{key}-{n}" for n in range(1, images + 1) for key in IMAGE_IDS]
    if 'id="container"' in path.read_text():
        ids.append("container")
    facts["visible"] = browser.evaluate(session, VISIBILITY.replace("IDS", json.dumps(ids)))
    if shot is not None:
        browser.screenshot(session, ARTIFACTS / shot)
    return page, facts


def assert_self_contained(page: Page, facts: dict[str, Any]) -> None:
    assert page.requests == [page.url], "the page asked for something besides itself"
    assert page.dialogs == []
    assert page.console == [] and page.exceptions == []
    assert facts["scripts"] == 0 and facts["frames"] == 0 and facts["handlers"] == []
    assert facts["styles"] == 1
    assert facts["headerColour"] == "rgb(29, 36, 51)"  # the page's own CSS applies
    assert facts["csp"] and "default-src 'none'" in facts["csp"]
    hidden = {k: v for k, v in facts["visible"].items() if v != "visible"}
    assert hidden == {}, f"key elements not visible: {hidden}"


def assert_no_external_reference(html: str) -> None:
    assert not re.search(r"<\s*(script|link|img|iframe|object|embed|base)\b", html, re.I)
    assert not re.search(r"@import|url\s*\(", html, re.I)
    for attribute in re.findall(r"\s(?:src|href|action|xlink:href)\s*=\s*\"([^\"]*)\"", html):
        assert attribute.startswith("#"), attribute


# -- the harness can fail -----------------------------------------------------------------------
def test_the_browser_check_catches_a_page_that_leaks(browser: Chromium, tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><header>x</header><img src="http://example.invalid/pixel.png">'
        "<script>alert('ran')</script></body></html>"
    )
    page, facts = load(browser, bad)
    assert "http://example.invalid/pixel.png" in page.requests
    assert page.dialogs == ["ran"]
    with pytest.raises(AssertionError):
        assert_self_contained(page, facts)
    with pytest.raises(AssertionError):
        assert_no_external_reference(bad.read_text())


# -- reports of real images ---------------------------------------------------------------------
def test_report_of_sample_images_in_chromium(browser: Chromium, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    html = write_report(out, SAMPLES / "docker-archive-multi.tar", SAMPLES / "oci-multiplatform")
    assert_no_external_reference(html)
    page, facts = load(browser, out, "report.png")
    assert_self_contained(page, facts)
    assert len([k for k in facts["visible"] if k.startswith("layers-")]) == 5
    assert facts["svgWidth"] > 300 and facts["barWidth"] > 0
    assert "dockscope/sample:other" in facts["svgText"] and "linux/arm/v7" in facts["svgText"]
    text = facts["text"]
    assert "all checks passed" in text
    assert "Reconstructed Dockerfile" in text and "FROM scratch" in text
    assert "/usr/share/doc/dockscope/README" in text  # deleted in layer 2, still stored
    assert "executables added above the base layers" in text


def test_report_of_the_dive_image_with_its_findings(tmp_path: Path) -> None:
    out = tmp_path / "dive.html"
    html = write_report(out, CORPUS / "docker-save-legacy-dive.tar")
    # dive's figures, as `dockscope efficiency` reports them
    eff = json.loads(
        invoke("efficiency", "--json", str(CORPUS / "docker-save-legacy-dive.tar")).out
    )
    assert f"{eff['efficiency'] * 100:.4f} %" in html
    types = json.loads(invoke("types", "--json", str(CORPUS / "docker-save-legacy-dive.tar")).out)
    kinds: dict[str, int] = {}
    for finding in types["findings"]:
        kinds[finding["kind"]] = kinds.get(finding["kind"], 0) + 1
    assert kinds  # world-writable /tmp, executables added above busybox
    titles = {"world-writable": "world-writable entries", "late-executable": "executables added"}
    for kind, count in kinds.items():
        assert re.search(f"{titles[kind]}[^<]*: {count}</h4>", html), kind
    # rm -rf /root/example in layer 9: every file below it is listed as deleted
    assert re.search(r"<td class=\"num\">\d+</td><td class=\"num\">9</td>.*/root/example/", html)


def test_a_tampered_image_is_reported_and_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "tampered.html"
    html = write_report(out, SAMPLES / "tampered" / "layer-byte-flipped.tar", code=1)
    assert "problems found" in html
    assert re.search(r"FAIL</span></td><td><code>diff-id</code>", html)
    assert "Could not be computed: " in html and "diff_id mismatch" in html
    assert "<h3>History</h3>" in html  # metadata-only parts are still there


def test_without_graphviz_the_dot_text_replaces_the_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    html = write_report(tmp_path / "r.html", SAMPLES / "oci-multiplatform")
    assert "<svg" not in html
    assert "apt-get install graphviz" in html
    assert "digraph &quot;layers&quot;" in html


def test_report_to_stdout_and_write_errors(tmp_path: Path) -> None:
    result = invoke("report", str(SAMPLES / "oci-layout"), "-o", "-")
    assert result.code == 0
    assert result.out.startswith("<!DOCTYPE html>")
    result = invoke("report", str(SAMPLES / "oci-layout"), "-o", str(tmp_path / "no" / "r.html"))
    assert result.code == 2 and "cannot write" in result.output
    result = invoke(
        "report",
        str(SAMPLES / "oci-layout"),
        "--container",
        "nope",
        "--root",
        str(tmp_path),
        "-o",
        str(tmp_path / "r.html"),
    )
    assert result.code == 2 and "no such container: nope" in result.output


def test_only_drawing_elements_of_an_svg_are_embedded() -> None:
    good = (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">'
        b'<text x="1">a&lt;b</text></svg>'
    )
    assert inline_svg(good) == '<svg><text x="1">a&lt;b</text></svg>'
    for bad in (
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
        b'<a x:href="javascript:alert(1)"><text>x</text></a></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><p>x</p></foreignObject></svg>',
        b"<svg><text>not svg namespace</text></svg>",
        b"<svg xmlns='http://www.w3.org/2000/svg'><text>unclosed</svg>",
    ):
        assert inline_svg(bad) is None, bad


# -- hostile images -----------------------------------------------------------------------------
PAYLOADS = {
    "tag": "evil:<script>alert('tag')</script>",
    "author": "</style><script>alert('author')</script>",
    "label": "<img src=x onerror=alert('label')>",
    "cmd": "</title><script>alert('cmd')</script>",
    "created_by": "echo '<script>alert(1)</script></style><img src=x onerror=alert(2)>'",
    "file": "<img src=x onerror=alert('file')>",
    "setuid": "<svg onload=alert('setuid')>",
    "deleted": "<iframe srcdoc=alert('deleted')>",
    "dir": "--><!--<style>",
}


def hostile_image(tmp_path: Path) -> Path:
    p = PAYLOADS
    base = build_layer(
        [
            dir_entry("app"),
            file_entry(f"app/{p['file']}", b"hi"),
            file_entry(f"app/{p['deleted']}", b"secret"),
            file_entry(f"app/{p['setuid']}", b"\x7fELF", mode=0o4755),
            dir_entry(f"app/{p['dir']}", mode=0o777),
        ]
    )
    # the top layer deletes one file and stores another again (an inefficient path)
    top = build_layer(
        [file_entry(f"app/.wh.{p['deleted']}"), file_entry(f"app/{p['file']}", b"again")]
    )
    return write_image(
        tmp_path / "hostile.tar",
        [base, top],
        tag=p["tag"],
        author=p["author"],
        config={"Cmd": [p["cmd"]], "Labels": {"x": p["label"], p["author"]: "v"}},
        history=[
            {"created_by": f"/bin/sh -c {p['created_by']}"},
            {"created_by": f"/bin/sh -c #(nop)  LABEL x={p['label']}", "empty_layer": True},
            {"created_by": f"/bin/sh -c rm '{p['deleted']}'"},
        ],
    )


def test_hostile_strings_are_text_not_markup(browser: Chromium, tmp_path: Path) -> None:
    out = tmp_path / "hostile.html"
    html = write_report(out, hostile_image(tmp_path))
    assert_no_external_reference(html)
    assert "<script" not in html.lower()
    assert html.count("</style>") == 1 and html.count("<style>") == 1
    head = html[: html.index("</head>")]
    assert head.count("</title>") == 1 and "&lt;/title&gt;" not in head
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page, facts = load(browser, out, "report-hostile.png")
    assert_self_contained(page, facts)
    text = facts["text"]
    for name, payload in PAYLOADS.items():
        assert payload in text, f"{name} is not shown as text"
    assert PAYLOADS["tag"] in facts["title"]
    # the graph holds them as text too
    assert "evil:<script>alert('tag')</script>" in facts["svgText"]
    assert "<script>alert(1)</script>" in facts["svgText"]
    # and the findings found them: the setuid file, the world-writable dir, the deleted file
    findings = text[text.index("Findings") :]
    assert PAYLOADS["setuid"] in findings and PAYLOADS["dir"] in findings
    assert f"/app/{PAYLOADS['deleted']}" in findings


# -- a runtime container ------------------------------------------------------------------------
@pytest.mark.root
def test_report_with_a_container_writable_layer(browser: Chromium, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("running a container needs root (as make test in CI runs)", pytrace=False)
    root = tmp_path / "state"
    image = CORPUS / "docker-save-legacy-dive.tar"
    script = "echo hi > /etc/new; rm /etc/group; echo x > '/tmp/<b>bold'"
    ok(dockscope(root, "run", "--name", "web", image, "sh", "-c", script))
    try:
        out = tmp_path / "container.html"
        ok(dockscope(root, "report", image, "--container", "web", "-o", out))
        html = out.read_text()
        section = html[html.index('<section id="container">') :]
        assert re.search(r'class="added">A</span></td><td><code class="wrap">/etc/new<', section)
        assert re.search(
            r'class="deleted">D</span></td><td><code class="wrap">/etc/group<', section
        )
        assert "/tmp/&lt;b&gt;bold" in section
        assert "2 added, 2 changed, 1 deleted" in section
        page, facts = load(browser, out, "report-container.png")
        assert_self_contained(page, facts)
        assert "/tmp/<b>bold" in facts["text"]
    finally:
        dockscope(root, "rm", "-f", "web")


def test_efficiency_is_never_rounded_up_to_a_perfect_score() -> None:
    from inspect_tool.render.html import _score

    assert _score(0.99997833) == "99.99 %"
    assert _score(1.0) == "100.00 %"
    assert _score(0.9844212134184309) == "98.44 %"


def test_report_shows_packages_and_redacted_secrets(tmp_path: Path) -> None:
    from tests.support.images import layer_tar

    token = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY2z4A"
    status = b"Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\n"
    layers = [
        layer_tar({"var/lib/dpkg/status": status, "app/settings.py": f'T = "{token}"\n'.encode()}),
        layer_tar({"app/.wh.settings.py": b""}),
    ]
    image = write_image(tmp_path / "i.tar", layers)
    html = write_report(tmp_path / "r.html", image)  # secrets do not fail the report
    packages = html[html.index('id="packages-1"') : html.index('id="secrets-1"')]
    assert "libc6" in packages and "2.36-9" in packages
    secrets = html[html.index('id="secrets-1"') : html.index('id="history-1"')]
    assert "github-token" in secrets and "/app/settings.py:1" in secrets
    assert "deleted by layer 1" in secrets
    assert "ghp_********" in secrets
    assert token not in html
