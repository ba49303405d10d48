"""Simulated rig: an RGB camera and an event camera looking at a procedural scene, with
exposure blur, threshold-crossing events with noise, triggers, a second viewpoint, clock
offset and drift, and ground-truth frames at any instant."""

from rig.sim.config import SimConfig
from rig.sim.rig import SimStep, SimulatedRig
from rig.sim.sources import SimEventSource, SimFrameSource, sim_sources

__all__ = [
    "SimConfig",
    "SimEventSource",
    "SimFrameSource",
    "SimStep",
    "SimulatedRig",
    "sim_sources",
]
