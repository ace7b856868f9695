"""Fast-simulation models behind the one :class:`Simulator` interface, by name."""

from hepfastsim.simulators.base import SIMULATOR_MODULES, SIMULATORS, GenEvents, Simulator, make_simulator, register
from hepfastsim.simulators.kinematics import KinematicsSimulator
from hepfastsim.simulators.parametric import ParametricConfig, ParametricSimulator

__all__ = [
    "SIMULATOR_MODULES",
    "SIMULATORS",
    "GenEvents",
    "Simulator",
    "make_simulator",
    "register",
    "ParametricConfig",
    "ParametricSimulator",
    "KinematicsSimulator",
]
