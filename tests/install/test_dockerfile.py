"""The Dockerfile's invariants, read from its text.

No Docker engine runs here, so nothing is built: this checks what can be seen
in the file (pinned base, multi-stage, final images from the slim runtime
stage with only the virtualenv copied in, a numeric non-root USER, and the
same UID, command and pins the chart and constraints.txt use), not that the
images build or run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from contactsync.controller import desired

from .chart import REPO, only, render

DOCKERFILE = REPO / "Dockerfile"
TARGETS = ("operator", "sync", "worker")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for word, argument in self.instructions if word == keyword]


def parse() -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, argument = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            base, _, name = argument.partition(" AS ")
            current = stages[name.strip()] = Stage(name.strip(), base.strip())
        elif current is None:
            assert word == "ARG", line
            key, _, default = argument.partition("=")
            args[key] = default
        else:
            current.instructions.append((word, argument))
    return args, stages


def lineage(stages: dict[str, Stage], name: str) -> list[str]:
    """The stage names from `name` down to its external base image."""
    chain = [name]
    while stages[chain[-1]].base in stages:
        chain.append(stages[chain[-1]].base)
    return chain


def test_base_image_is_pinned_without_a_registry_host() -> None:
    args, stages = parse()
    image = args["PYTHON_IMAGE"]
    # A full version tag (not latest, not a floating minor) of the Python pyproject requires.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", image), image
    # The Rust toolchain that builds native/ in the build stage, pinned the same way.
    assert re.fullmatch(r"rust:\d+\.\d+\.\d+-slim-[a-z]+", args["RUST_IMAGE"])
    for pinned in (image, args["RUST_IMAGE"]):
        assert "." not in pinned.split("/")[0].split(":")[0]  # no host part
    external = {s.base for s in stages.values() if s.base not in stages}
    assert external == {"${PYTHON_IMAGE}", "${RUST_IMAGE}"}


@pytest.mark.parametrize("target", TARGETS)
def test_final_image_is_multi_stage_and_non_root(target: str) -> None:
    _, stages = parse()
    chain = lineage(stages, target)
    assert chain == [target, "runtime"], "final images start from the slim runtime stage"
    image = stages[target]
    copies = image.all("COPY")
    assert copies, "the package comes from a build stage"
    for copy in copies:
        source_stage = re.match(r"--from=(\S+) /opt/contactsync /opt/contactsync$", copy)
        assert source_stage, copy
        assert source_stage.group(1).startswith("build")
    users = image.all("USER")
    assert users[-1] == f"{desired.UID}:{desired.UID}"
    # Nothing is installed in the final stages: no compilers, no package managers.
    for stage in (stages[name] for name in chain):
        for run in stage.all("RUN"):
            assert not re.search(r"apt-get install|pip install|apk add", run), run


def test_build_stage_installs_the_repository_with_constraints() -> None:
    _, stages = parse()
    (install,) = stages["build"].all("RUN")[-1:]
    assert "-c constraints.txt ." in install
    assert "pyproject.toml constraints.txt README.md ./" in stages["build"].all("COPY")
    worker = " ".join(stages["build-worker"].all("RUN"))
    pinned = {
        line.split("==")[0].lower(): line
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    assert f'"{pinned["prefect-kubernetes"]}"' in worker
    ignored = (REPO / ".dockerignore").read_text()
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "operator/", "native/"):
        assert f"!{needed}" in ignored


def test_runtime_drops_pip_and_makes_the_user() -> None:
    _, stages = parse()
    (run,) = stages["runtime"].all("RUN")
    assert "pip uninstall" in run
    assert f"--uid {desired.UID}" in run


def test_operator_entrypoint_is_the_charts_command() -> None:
    _, stages = parse()
    (entrypoint,) = stages["operator"].all("ENTRYPOINT")
    deployment = only(render(), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert entrypoint == str(container["command"][:5]).replace("'", '"')
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] == pod["runAsGroup"] == desired.UID
