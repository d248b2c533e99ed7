//! OpenCV vision: calibration, scalp mapping, follicle detection, tone, surface, tracking.
