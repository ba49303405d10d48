"""Calibration of the RGB + event rig: solvers, the wizard, and the files the pipeline
loads. The pipeline needs only `load_calibration(path).event_to_frame_map()`."""

from calibration.errors import CalibrationError
from calibration.model import Calibration
from calibration.storage import load_calibration, save_calibration

__all__ = ["Calibration", "CalibrationError", "load_calibration", "save_calibration"]
