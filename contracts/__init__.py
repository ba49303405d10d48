"""The contracts every part of slomo-rig relies on, in one place.

rig/, calibration/, models/ and pipeline/ import from here; this package imports from
none of them except `rig.types` (the sensor data types), so nothing imports "upward".
"""
