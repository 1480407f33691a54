"""Fault control: the sandbox's fault profiles armed at an agency, in process or through the control server."""

from __future__ import annotations

from typing import Any, Protocol


class FaultControl(Protocol):
    """Arms the sandbox's fault profiles at an agency."""

    def agencies(self) -> set[str]: ...

    def get(self, agency: str) -> list[str]: ...

    def set(self, agency: str, faults: list[str]) -> None: ...


class SandboxFaults:
    """Fault control of an in-process :class:`sandbox.agencies.Sandbox`."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox

    def agencies(self) -> set[str]:
        return set(self.sandbox.faults)

    def get(self, agency: str) -> list[str]:
        return list(self.sandbox.faults.get(agency, []))

    def set(self, agency: str, faults: list[str]) -> None:
        self.sandbox.set_faults(agency, list(faults))


class ControlServerFaults:
    """Fault control of a running sandbox through its control server (``POST {control}/faults``)."""

    def __init__(self, control_url: str, timeout: float = 10.0) -> None:
        self.url, self.timeout = control_url.rstrip("/"), timeout

    def _all(self) -> dict[str, list[str]]:
        import requests

        response = requests.get(self.url + "/faults", timeout=self.timeout)
        response.raise_for_status()
        return dict(response.json().get("faults", {}))

    def agencies(self) -> set[str]:
        return set(self._all())

    def get(self, agency: str) -> list[str]:
        return list(self._all().get(agency, []))

    def set(self, agency: str, faults: list[str]) -> None:
        import requests

        response = requests.post(self.url + "/faults", json={"agency": agency, "faults": list(faults)}, timeout=self.timeout)
        if response.status_code != 200:
            raise RuntimeError(f"the sandbox's control server refused faults {faults} for {agency} (HTTP {response.status_code})")
