"""Devices to benchmark on: this machine, Linux boards over SSH, Android phones over ADB.

The registry (registry.py) names them in a TOML file; `check_device` says what one has and
lacks; `run_on_devices` benches a job on several (this machine alone, the others concurrently),
appending results as they come; `verify_on_devices` checks outputs against PyTorch's there.
"""

from payattn.devices.adb import AdbDevice, AdbSettings
from payattn.devices.base import BenchRun, DeviceError
from payattn.devices.local import LocalDevice
from payattn.devices.registry import (
    LOCAL,
    DeviceSpec,
    add_adb_device,
    add_device,
    add_ssh_device,
    default_devices_file,
    get_device,
    list_devices,
    load_registry,
    remove_device,
)
from payattn.devices.fleet import (DeviceCheck, DeviceFailure, check_device, open_device, run_on_devices,
                                    verify_on_devices)
from payattn.devices.ssh import SshDevice, SshSettings

__all__ = [
    "LOCAL",
    "AdbDevice",
    "AdbSettings",
    "BenchRun",
    "DeviceCheck",
    "DeviceError",
    "DeviceFailure",
    "DeviceSpec",
    "LocalDevice",
    "SshDevice",
    "SshSettings",
    "add_adb_device",
    "add_device",
    "add_ssh_device",
    "check_device",
    "default_devices_file",
    "get_device",
    "list_devices",
    "load_registry",
    "open_device",
    "remove_device",
    "run_on_devices",
    "verify_on_devices",
]
