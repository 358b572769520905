"""``tributary dev env``: the exports that point gcloud and Google's clients at the running stack."""

from __future__ import annotations

import subprocess

from common.local.devenv import render, stack_exports

ENDPOINTS = {
    "api_url": "http://127.0.0.1:8080",
    "pubsub_emulator_host": "127.0.0.1:8085",
    "firestore_emulator_host": "127.0.0.1:8086",
    "tasks_emulator_host": "127.0.0.1:8123",
    "tasks_rest_url": "http://127.0.0.1:8127",
    "scheduler_emulator_host": "127.0.0.1:8124",
    "scheduler_rest_url": "http://127.0.0.1:8128",
}


def test_the_stack_exports() -> None:
    assert stack_exports(ENDPOINTS, "tributary-local") == {
        "CLOUDSDK_CORE_PROJECT": "tributary-local",
        "GOOGLE_CLOUD_PROJECT": "tributary-local",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDTASKS": "http://127.0.0.1:8127/",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDSCHEDULER": "http://127.0.0.1:8128/",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": "http://127.0.0.1:8085/",
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8086",
        "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:8123",
        "CLOUD_SCHEDULER_EMULATOR_HOST": "127.0.0.1:8124",
    }


def test_a_stack_without_the_scheduler_exports_no_scheduler_override() -> None:
    exports = stack_exports({k: v for k, v in ENDPOINTS.items() if "scheduler" not in k}, "p")
    assert not any("SCHEDULER" in name for name in exports)


def test_the_lines_survive_a_posix_shell() -> None:
    exports = {"A_PLAIN": "http://127.0.0.1:8127/", "B_ODD": "it's $HOME; `x`"}
    script = render(exports) + 'printf "%s\\n%s\\n" "$A_PLAIN" "$B_ODD"\n' + render(exports, unset=True)
    script += 'printf "%s\\n" "${A_PLAIN-unset}"\n'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["http://127.0.0.1:8127/", "it's $HOME; `x`", "unset"]
