"""The simulated plant otprobe is tested against: Modbus/TCP, S7comm and EtherNet/IP devices on loopback.

Each device listens on its own 127.x.y.z address, records what it sees (`Recorder`) and can be given a
fault mode (`Fault`). Plants are YAML files in `simulators/plants/`; `running_plant` runs one in-process,
`python -m simulators up PLANT` runs one in the foreground. Nothing here imports otprobe.
"""

from simulators.faults import Fault, FaultMode
from simulators.plant import Plant, PlantError, PlantSpec, RunningDevice, load_plant, relocate, running_plant
from simulators.recorder import Recorder

__all__ = [
    "Fault",
    "FaultMode",
    "Plant",
    "PlantError",
    "PlantSpec",
    "Recorder",
    "RunningDevice",
    "load_plant",
    "relocate",
    "running_plant",
]
