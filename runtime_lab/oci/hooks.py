"""config.json's hooks, run as the runtime spec says: each with the container's state (JSON)
on its stdin, ``args`` as its argv (``args[0]`` included), ``env`` as its whole environment,
killed after ``timeout`` seconds. A failing prestart, createRuntime, createContainer or
startContainer hook stops the container; a failing poststart or poststop hook is a warning."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from runtime_lab.oci.config import Hook
from runtime_lab.process.launch import StepReporter

FATAL = {"prestart", "createRuntime", "createContainer", "startContainer"}


class HookError(OSError):
    pass


def run_hooks(
    kind: str, hooks: tuple[Hook, ...], state: dict[str, Any], reporter: StepReporter
) -> list[str]:
    """Run each hook of ``kind`` in order; the warnings of non-fatal failures."""
    warnings = []
    for index, hook in enumerate(hooks):
        try:
            reporter.run(
                "hook",
                lambda h=hook: _run(h, state),  # type: ignore[misc]
                args={"kind": kind, "index": index, "path": hook.path, "args": list(hook.args)},
            )
        except HookError as exc:
            if kind in FATAL:
                raise HookError(f"hooks.{kind}[{index}]: {exc}") from None
            warnings.append(f"hooks.{kind}[{index}]: {exc}")
    return warnings


def _run(hook: Hook, state: dict[str, Any]) -> dict[str, Any]:
    argv = list(hook.args) or [hook.path]
    env = dict(item.split("=", 1) for item in hook.env if "=" in item)
    try:
        proc = subprocess.run(
            argv,
            executable=hook.path,
            input=json.dumps(state).encode(),
            env=env,
            capture_output=True,
            timeout=hook.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HookError(f"{hook.path}: killed after its timeout of {hook.timeout}s") from None
    except OSError as exc:
        raise HookError(f"{hook.path}: {exc.strerror}") from None
    stderr = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        detail = f": {stderr.splitlines()[-1]}" if stderr else ""
        raise HookError(f"{hook.path} exited {proc.returncode}{detail}")
    return {"exit_code": 0, "stdout": proc.stdout.decode(errors="replace")[-2000:]}
