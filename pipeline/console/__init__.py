"""The operator console: `slomo-rig console` serves a web page (live view, recording,
calibration wizard, sessions) that drives the same capture, calibration and replay
code as the command line. See docs/console.md."""
