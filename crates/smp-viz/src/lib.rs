//! Rerun logging of every stage, live or to an .rrd file.
